"""Single-teacher task distillation: `pieces` (the loss and step, pure) and
`pipeline` (teacher fine-tuning, cached outputs, student, report)."""
