"""What every package of yolov7-track shares: the root of its errors (:mod:`yolov7_track.errors`).

It imports nothing else, so ``tracker`` (numpy only), ``detector`` (torch), ``training`` and
``app`` can all depend on it without depending on each other.
"""
