"""Meta-architectures (registered in Detectron2's ``META_ARCH_REGISTRY`` when ``reid2.modeling`` is imported).

What the engine and the tools read from a model class, so that they name no particular model (a project's model
declares the same attributes):

* ``class_count_keys``: ``{config key: state-dict entries whose first dimension is that count}``, e.g.
  ``{"MODEL.REID.NUM_CLASSES": ("classifier.weight",)}``. ``reid2.engine.predictor.load_model`` fills a 0 count
  from the checkpoint, so inference needs no training set.
* ``training_only_modules``: child-module names left out of the exported inference weights (KD's hint adapter).
* ``export_inference_model()``: the module a re-ID model runs at test time (default: the model itself; a
  two-stream model returns its test stream). ``reid2.engine.export`` exports it.
"""
