"""Back-off before a transiently failed job is delivered again."""


def test_retry_delay_grows_exponentially_with_jitter_and_is_capped():
    from img2img.core.errors import retry_delay

    assert [retry_delay(a, jitter=1.0) for a in (1, 2, 3, 4)] == [20, 40, 80, 160]
    assert [retry_delay(a, jitter=0.0) for a in (1, 2, 3)] == [10, 20, 40]
    assert retry_delay(20, jitter=1.0) == 900 and retry_delay(20, jitter=0.0) == 450
