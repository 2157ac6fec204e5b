"""The speed benchmarks behind ``emukg bench``, shipped inside the package so that an installed wheel runs them.

Modules (each also runs on its own: ``python -m emukg.bench.<module> --help``; this package is the one home of
emukg's benchmarks — the accuracy studies of docs/results.md are the scripts in ``studies/``):

* :mod:`~emukg.bench.suite`         ``run_suite``: the four benchmarks below in one table (``emukg bench``)
* :mod:`~emukg.bench.train_step`    ``bench_train_steps``: median ms per full training step
* :mod:`~emukg.bench.eval_speed`    ``bench_eval``: filtered-evaluation queries/s and memory (one child process per model)
* :mod:`~emukg.bench.sans_build`    ``bench_sans_build``: seconds to build SANS neighbourhoods
* :mod:`~emukg.bench.load_dataset`  ``bench_load``: seconds to load a dataset and its filter indexes
* :mod:`~emukg.bench.scale`         ``emukg bench --scale``: step time and peak RSS at 0.1 M–2.5 M entities, 2-process gloo
* :mod:`~emukg.bench.scale_eval`    full filtered evaluation and loading at scale (fresh child processes)
* :mod:`~emukg.bench.onevsall`      1-vs-all step time and working memory at 1 M entities
* :mod:`~emukg.bench.synthetic`     ``synthetic_problem``: a random graph and model of any size (a fixture, not a benchmark)

Importing ``emukg.bench`` itself imports nothing heavy (``emukg bench`` loads the suite only when it runs).
"""
