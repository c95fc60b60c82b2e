"""vramplan.core: the pure cost model.

Standard library only: no torch, transformers, numpy, printing or file IO. Everything around it
(HF config parsing, file formats, CLI, rendering, tracing) lives outside this package and imports it,
never the other way round. A test blocks every third-party package and imports this package.
"""
