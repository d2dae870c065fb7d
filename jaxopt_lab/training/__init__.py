"""Training Flax NNX classifiers on TFDS image datasets with any optax-style optimizer.

- :mod:`~jaxopt_lab.training.data`: TFDS datasets as device-resident uint8 arrays.
- :mod:`~jaxopt_lab.training.models`: the seed MLP.
- :mod:`~jaxopt_lab.training.step`: the pure train step, an epoch as one ``lax.scan``,
  evaluation and prediction.
- :mod:`~jaxopt_lab.training.loop`: ``fit``, a short loop over those pieces.
- :mod:`~jaxopt_lab.training.runs`: the run folder (checkpoint, history, metrics, figures).
- :mod:`~jaxopt_lab.training.parallel`: data parallelism with ``jax.sharding``.
- :mod:`~jaxopt_lab.training.sweep`: many runs in one compiled program (``vmap``).

Importing this package pulls in Flax; TensorFlow is imported only when a dataset is
loaded.
"""
