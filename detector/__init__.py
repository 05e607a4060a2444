"""detector package of yolov7-track."""
