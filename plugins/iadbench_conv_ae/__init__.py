"""A convolutional autoencoder trained from scratch on pixels, for iadbench."""
