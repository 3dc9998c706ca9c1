"""What runs and reads worlds: the run folder, the runner, interviews, calibration, comparison,
plots, training, and the factory that builds deciders and their LLM backends.

`run_folder` alone knows the layout of a run folder; the other modules ask it for paths.
The world itself (`simenv.world` and the modules it orders) never imports from here.
"""
