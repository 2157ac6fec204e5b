"""EMU, SANS negatives and emukg's evaluator inside PyKEEN: a runnable example (Nations ships with PyKEEN).

    pip install -c constraints/cpu-torch.txt -e ".[pykeen]"
    python examples/pykeen_emu.py
"""

import emukg.pykeen as ep  # registers training_loop="emu", negative_sampler="sans", evaluator="emukg" in PyKEEN
from pykeen.datasets import Nations
from pykeen.pipeline import pipeline

dataset = Nations()
result = pipeline(
    dataset=dataset, model="DistMult", model_kwargs=dict(embedding_dim=32),
    training_loop="emu", training_loop_kwargs=dict(emu=0.39, neg_label=0.53, ce_coef=0.11),
    negative_sampler="sans", negative_sampler_kwargs=dict(num_negs_per_pos=16, khop=2),
    training_kwargs=dict(num_epochs=20, batch_size=128, use_tqdm=False), random_seed=0,
    evaluator="emukg", evaluation_kwargs=dict(use_tqdm=False),  # PyKEEN's rank-based metrics, ranked by emukg
)
metrics = ep.evaluate(result.model, dataset.testing.mapped_triples,
                      additional_filter_triples=[dataset.training.mapped_triples, dataset.validation.mapped_triples])
print("pipeline (evaluator='emukg') MRR", round(result.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank"), 6))
print("emukg.pykeen.evaluate MRR", round(metrics.get_metric("both.realistic.inverse_harmonic_mean_rank"), 6))
print("hits@10", round(metrics.get_metric("both.realistic.hits_at_10"), 6))
