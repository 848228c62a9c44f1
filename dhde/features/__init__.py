"""Hand-crafted patch features (paper 3.2-3.4: DCT ring spectrum, gradient histogram, singular
values), the scale encoding and feature sets (3.6, 5.2), and the pipeline from context patches to
the classifier's input vector. The deep feature (3.5) is part of the model: :mod:`dhde.model.cnn`."""
