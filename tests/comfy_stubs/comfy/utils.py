"""Stand-in for comfy.utils.ProgressBar: records updates and checks the interrupt flag, as
ComfyUI's progress hook does."""

from . import model_management

updates = []  # (value, total) in call order
previews = []  # (value, total, format, [width, height], max size) of updates that carried a preview


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = value
        if preview is None:
            updates.append((value, self.total))
        else:
            previews.append((value, self.total, preview[0], list(preview[1].size), preview[2]))
        model_management.throw_exception_if_processing_interrupted()

    def update(self, value):
        self.update_absolute(self.current + value)
