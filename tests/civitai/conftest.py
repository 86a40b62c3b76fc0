from tests.fake_civitai import civitai_env, fake_civitai  # noqa: F401  (pytest fixtures)
