"""LoRAs: resolving references to verified local files (:mod:`.resolve`, :mod:`.library`),
family compatibility (:mod:`.compat`), the catalog (:mod:`.catalog`), trigger words
(:mod:`.triggers`) and applying a stack to a pipeline (:mod:`.apply`, :mod:`.stack`).
Importing this package never imports torch or diffusers."""
