"""Swagger UI as a developer meets it (issue 12, part 7): the description's words all there, the
operations under their tags, one security scheme explained, a real example body for predict."""

from __future__ import annotations

import pytest


@pytest.fixture
def demo_cases() -> int:
    return 0  # the docs need no cases


def test_swagger_ui_explains_the_token_groups_operations_and_shows_a_real_predict_example(site):
    page = site.page()
    page.goto("/api/docs/")
    page.wait_for_selector(".opblock-tag")

    description = page.locator(".information-container .description").inner_text()
    assert "Authorization: Bearer <access>" in description  # not swallowed as an HTML tag
    tags = [name.strip() for name in page.locator(".opblock-tag").all_inner_texts()]
    headings = [tag.splitlines()[0] for tag in tags]
    for heading in ("auth", "cases", "datasets", "training", "registry", "serving", "A/B tests", "health"):
        assert heading in headings, headings
    assert headings[0] == "auth"
    assert "v1" not in headings
    site.shoot(page, "api-docs")

    page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.wait_for()
    text = dialog.inner_text()
    assert "jwtAuth" in text
    assert "cookieAuth" not in text
    assert "servingJwtAuth" not in text
    assert "Authorization: Bearer <access>" in text
    site.shoot(page, "api-docs-authorize")
    dialog.locator("button.close-modal").click()

    page.locator("#operations-serving-predict .opblock-summary").click()
    body = page.locator("#operations-serving-predict .body-param__example, #operations-serving-predict pre")
    body.first.wait_for()
    example = " ".join(body.all_inner_texts())
    assert '"mean_radius": 17.99' in example
    assert '"worst_fractal_dimension"' in example
    site.shoot(page, "api-docs-predict")
