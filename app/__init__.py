"""app package of yolov7-track."""
