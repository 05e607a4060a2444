"""app/gui package of yolov7-track."""
