"""MT-DNN-KD: per-task teacher ensembles distilled into one multi-task student.
`pieces`: ensemble soft targets, the multi-task loss and step, the task sampler
(pure); `pipeline`: the end-to-end run."""
