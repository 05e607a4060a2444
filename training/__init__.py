"""training package of yolov7-track."""
