// Datasets module (work in progress).
