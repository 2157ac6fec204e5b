"""NBFNet (Zhu et al., NeurIPS 2021, "Neural Bellman-Ford Networks"), a model family that is not an embedding model.

* :mod:`emukg.nbfnet.model` (layer *foundations*, beside :mod:`emukg.models`): the network, registered as
  ``NBFNet`` in :data:`emukg.models.MODELS` — boundary condition, generalised Bellman-Ford layers, the scoring MLP,
  the query's edge removal, ``score_all`` for the evaluator.
* :mod:`emukg.nbfnet.step` (layer *components*): its training objective — one message-passing pass per query
  scores the positive and every negative; the self-adversarial binary loss, cross-entropy, and EMU on the final
  node representations — under the ``train_memory_mb`` budget.

This package file imports nothing, so importing :mod:`emukg.nbfnet.model` from :mod:`emukg.models` stays in its layer.
"""
