"""One Keras model: the task rules (``tasks``, no TensorFlow), its build, fit and metrics.

Modules are imported one by one: ``tuning.model.tasks`` must stay importable without TensorFlow.
"""
