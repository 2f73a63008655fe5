"""Mixed-vocabulary distillation: a student with its own small vocabulary.
`pieces`: mixed segmentation, dual MLM, shared-projection loss and the stage
steps (pure); `pipeline`: vocabulary, Stages I-III, report."""
