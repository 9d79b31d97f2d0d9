"""What `help()` tells (issue 24, item 8): the lifetime rule, the fork
rule, the drop-in's status_ttl clamp, its type hints and its Service."""

import pydoc
import typing

import os_lively
from os_lively import conf, service


def test_help_tells_the_lifetime_and_fork_rules():
    doc = pydoc.render_doc(os_lively.Client, renderer=pydoc.plaintext)
    assert "garbage-collected" in doc and "DOWN at once" in doc
    assert "os.fork()" in doc
    assert "os.fork()" in pydoc.render_doc(os_lively.Subscription, renderer=pydoc.plaintext)


def test_dropin_documents_the_clamp_and_has_type_hints():
    assert conf.Conf(status_ttl=3).status_ttl == 5
    assert "MIN_STATUS_TTL" in conf.Conf.__doc__ and "status_ttl=3" in conf.Conf.__doc__
    for fn in (service.update, service.is_up, service.get_one, service.get_many, service.delete,
               service.down, service.notify, service.status_itoa, service.status_atoi):
        assert "return" in typing.get_type_hints(fn), fn.__name__
    text = pydoc.render_doc(service, renderer=pydoc.plaintext)
    assert "class Service" in text or "Service = class" in text, text[:2000]
    assert "Service" in service.__all__ and "Status" in service.__all__
