"""String feeds in the forms users hand over (issue 14's mutation check)."""

from __future__ import annotations

import numpy as np
import pytest

from recom_tvm.models import zoo

DEMO = zoo.demo()


def _feeds(batch=3):
    return DEMO.sample(batch, rng=1)


def test_string_feeds_as_object_arrays_and_lists(demo):
    """String values as a numpy object array (what pandas hands over) or a list answer like bytes / str arrays
    (the mutation check: a flipped `value.dtype != object` refused object arrays and no test noticed)."""
    feeds = _feeds()
    idx, vals, shape = feeds["country"]
    exp = demo.model.run(feeds)["score"]
    for form in (np.array([v.decode() if isinstance(v, bytes) else v for v in vals], dtype=object),
                 np.array(list(vals), dtype=object), [v.decode() if isinstance(v, bytes) else v for v in vals]):
        feeds["country"] = (idx, form, shape)
        np.testing.assert_array_equal(demo.model.run(feeds)["score"], exp)


@pytest.mark.parametrize("bad", ["country", "tags"])
def test_a_non_string_element_is_reported_for_its_own_feed(demo, bad):
    """String feeds given as objects are converted together; when one holds a non-string element, each feed is
    converted alone and the error names the bad one, never a good object array beside it (the mutation check:
    refusing object arrays there survived every other test)."""
    import recom_tvm

    feeds = _feeds()
    idx, vals, shape = feeds[bad]
    feeds[bad] = (idx, [*list(vals)[:-1], 7], shape)
    with pytest.raises(recom_tvm.FeedError, match=rf"{bad}\.values.*element of type int"):
        demo.model.run(feeds)
