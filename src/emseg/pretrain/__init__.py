"""MoCoV2 pretraining of 2D ResNet encoders on curated patches."""
