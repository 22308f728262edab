"""Tools around the pipeline: corpus and stage statistics, plots, and the bundled sample corpus generator."""
