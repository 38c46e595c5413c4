"""The content negotiation's shortcut answers what DRF's own negotiation answers."""

from __future__ import annotations

import pytest
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from learning_engine.negotiation import ContentNegotiation


class FhirRenderer(JSONRenderer):
    media_type = "application/fhir+json"
    format = "fhir"


RENDERER_SETS = [
    [JSONRenderer(), BrowsableAPIRenderer()],
    [JSONRenderer(), FhirRenderer()],
    [FhirRenderer(), JSONRenderer()],
    [TemplateHTMLRenderer(), JSONRenderer()],
]
ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/fhir+json",
    "application/json; indent=4",
    "text/html",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "application/*",
    "*/*; q=0.5",
]


def _request(accept: str | None, query: str = "") -> Request:
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    return Request(APIRequestFactory().post(f"/api/v1/x/{query}", **headers))


def _outcome(negotiation, request, renderers, suffix=None):
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except Exception as refused:  # NotAcceptable, Http404: the same refusal on both sides
        return type(refused).__name__
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", RENDERER_SETS, ids=lambda r: "+".join(type(x).__name__ for x in r))
@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize(
    ("query", "suffix"), [("", None), ("?format=fhir", None), ("?format=json", None), ("", "json")]
)
def test_the_shortcut_agrees_with_drf(renderers, accept, query, suffix):
    ours = _outcome(ContentNegotiation(), _request(accept, query), renderers, suffix)
    drf = _outcome(DefaultContentNegotiation(), _request(accept, query), renderers, suffix)
    assert ours == drf


def test_the_shortcut_skips_drf_for_the_usual_requests(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("DRF's negotiation ran")

    monkeypatch.setattr(DefaultContentNegotiation, "select_renderer", refuse)
    for accept in (None, "*/*", "application/json"):
        renderer, media_type = ContentNegotiation().select_renderer(_request(accept), [JSONRenderer()])
        assert (type(renderer), media_type) == (JSONRenderer, "application/json")


def test_the_api_uses_it(settings):
    assert (
        settings.REST_FRAMEWORK["DEFAULT_CONTENT_NEGOTIATION_CLASS"] == "learning_engine.negotiation.ContentNegotiation"
    )
