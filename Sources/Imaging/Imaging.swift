// Imaging module (work in progress).
