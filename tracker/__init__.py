"""tracker package of yolov7-track."""
