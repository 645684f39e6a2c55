"""A feature autoencoder on pretrained CNN features for iadbench."""
