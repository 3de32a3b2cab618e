"""The shared building blocks below every family (which they never import): convolutions and
layers, the pretrained backbones and the feature module over them, feature statistics, masks,
score maps and the perceptual score."""
