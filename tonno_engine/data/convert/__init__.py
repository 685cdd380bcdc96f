"""Public data sets, as their providers publish them, made into tonno data sets (docs/datasets.md).

One module per data set (:mod:`.mosmed`, :mod:`.autopet`, :mod:`.duke`), each a generator of
:class:`~tonno_engine.base.events.Progress` events that ends with a :class:`.common.ConvertResult`;
:mod:`.common` writes ``labels.csv``, ``dataset.json`` and the report and checks the counts against the
published totals.
"""
