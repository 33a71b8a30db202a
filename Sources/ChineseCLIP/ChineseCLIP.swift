// ChineseCLIP module (work in progress).
