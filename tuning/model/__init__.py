"""One Keras model: the task rules (tasks live in ``tuning.config.tasks``), its build, fit and metrics.

Modules are imported one by one: ``tuning.config.tasks`` must stay importable without TensorFlow.
"""
