"""Segmentation metrics: confusion matrix, per-class IoU, mIoU."""
