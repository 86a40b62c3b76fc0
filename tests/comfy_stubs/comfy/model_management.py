"""Stand-in for comfy.model_management: the interrupt flag and unload_all_models."""

interrupt_processing = False


class InterruptProcessingException(Exception):
    pass


def interrupt_current_processing(value=True):
    global interrupt_processing
    interrupt_processing = value


def throw_exception_if_processing_interrupted():
    global interrupt_processing
    if interrupt_processing:
        interrupt_processing = False
        raise InterruptProcessingException()


unloaded = 0  # how many times ComfyUI's own models were unloaded


def unload_all_models():
    global unloaded
    unloaded += 1
