"""The eval room: judge a checkpoint and draw what it predicts (grids now; metrics, GIFs, plots later).

Reads checkpoints through the consolidated generator, so nothing here needs DeepSpeed.
"""
