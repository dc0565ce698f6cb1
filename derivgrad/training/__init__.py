"""Training on the kernels: the LeNet and its layers, data sets, the training loop and its
settings, checkpoints, data parallelism over MPI, prediction, and the step/epoch timings
of ``derivgrad bench``. Nothing here imports SymPy or the documents."""
