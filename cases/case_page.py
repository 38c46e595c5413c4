"""What a case's admin page shows of its clinical content, in the dictionary's words (issue 11):
the findings as a table (name, value, unit, expected range, flag), the symptoms and the diagnosis
by name, and which dictionary version the case was checked against.

The dictionary is the version the case was checked against, or, for a case flagged or not yet
checked, its cohort's current one. The caller chooses which values to show (the raw record for a
user with PHI access, the de-identified one otherwise); unknown entries are named by position, as
in every dictionary message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from cases.case_form import number_text, range_text, unit_text
from cases.dictionary.checking import current_dictionary
from cases.dictionary.definition import Definition, Finding
from cases.dictionary.models import DataDictionary
from cases.dictionary.validation import check_finding_value


def case_dictionary(case: Any) -> DataDictionary | None:
    """The version to read the case with: the one it was checked against, else its cohort's current one."""
    if not hasattr(case, "_page_dictionary"):  # read once per page, by each field that shows it
        case._page_dictionary = case.dictionary if case.dictionary_id else current_dictionary(case.cohort)
    dictionary: DataDictionary | None = case._page_dictionary
    return dictionary


def finding_flag(finding: Finding, value: float) -> tuple[str, str]:
    """(css class, text) of a value against its finding: empty when within the expected range."""
    error, quality = check_finding_value(finding, value)
    if error is not None:
        if error.code == "outside_hard_limits":
            return "flag-error", "outside hard limits"
        return "flag-error", "not a valid value"
    if quality is not None:
        low = finding.expected_range.min
        below = low is not None and value < low
        return "flag-warning", "below expected range" if below else "above expected range"
    return "", ""


def value_text(finding: Finding, value: float) -> str:
    if finding.value_type == "boolean" and value in (0, 1):
        return "Yes" if value == 1 else "No"
    if finding.value_type == "category":
        name = dict(finding.values).get(int(value)) if float(value).is_integer() else None
        return f"{name} ({number_text(value)})" if name else number_text(value)
    return number_text(value)


def findings_table(findings: Mapping[str, Any], definition: Definition | None) -> SafeString:
    if not findings:
        return format_html("{}", "No findings recorded.")
    if definition is None:
        return format_html("{}", "The cohort has no published data dictionary: the findings are in the record below.")
    rows = []
    unknown = []
    # In the dictionary's order, whatever order the record's keys are stored in (PostgreSQL's jsonb
    # sorts them); an entry outside the dictionary is named by its stored position.
    order = {item.key: index for index, item in enumerate(definition.findings)}
    entries = sorted(enumerate(findings.items()), key=lambda entry: order.get(entry[1][0], len(order)))
    for position, (key, value) in entries:
        finding = definition.finding(key)
        if finding is None:
            unknown.append(position + 1)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            rows.append((finding.display_name, "—", unit_text(finding), "", "flag-error", "not a number"))
            continue
        css, flag = finding_flag(finding, float(value))
        expected = range_text(finding.expected_range, finding) if finding.value_type in ("number", "integer") else ""
        rows.append((finding.display_name, value_text(finding, float(value)), unit_text(finding), expected, css, flag))
    for position in unknown:
        rows.append((f"Entry {position} (of {len(findings)})", "", "", "", "flag-error", "not in the dictionary"))
    body = format_html_join(
        "",
        '<tr><th scope="row">{}</th><td class="num">{}</td><td>{}</td><td>{}</td><td class="{}">{}</td></tr>',
        rows,
    )
    missing = [item.display_name for item in definition.findings if item.key not in findings]
    note = format_html('<p class="help">Not recorded: {}.</p>', ", ".join(missing)) if missing else ""
    return format_html(
        '<table class="case-findings"><thead><tr><th scope="col">Finding</th><th scope="col">Value</th>'
        '<th scope="col">Unit</th><th scope="col">Expected range</th><th scope="col">Flag</th></tr></thead>'
        "<tbody>{}</tbody></table>{}",
        body,
        note,
    )


def symptoms_list(symptoms: Sequence[Any], definition: Definition | None) -> SafeString:
    if not symptoms:
        return format_html("{}", "None recorded.")
    names = {item.key: item.display_name for item in definition.symptoms} if definition else {}
    items = []
    for position, key in enumerate(symptoms):
        if key in names:
            items.append((names[key], ""))
        else:
            items.append((f"Entry {position + 1} (of {len(symptoms)})", " — not in the dictionary"))
    return format_html('<ul class="case-symptoms">{}</ul>', format_html_join("", "<li>{}{}</li>", items))


def diagnosis_text(code: str, definition: Definition | None) -> str:
    if not code:
        return "Not known yet."
    name = definition.diagnosis_name(code) if definition else ""
    return f"{code} {name}" if name else f"{code} (not in the dictionary's code set)"


def dictionary_check(case: Any) -> SafeString:
    if case.dictionary_id:
        dictionary = case.dictionary
        return format_html(
            "Checked against the {} data dictionary, version {}.", dictionary.cohort.slug, dictionary.version
        )
    if case.dictionary_errors:
        return format_html(
            "Flagged for review: the record does not fit its cohort's current dictionary.<ul>{}</ul>",
            format_html_join("", "<li>{}</li>", ((issue.get("message", ""),) for issue in case.dictionary_errors)),
        )
    return format_html("{}", "Not checked against a data dictionary.")
