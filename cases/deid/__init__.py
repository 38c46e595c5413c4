"""De-identification: the only form of a case that leaves the ``cases`` app.

Policy (HIPAA Safe Harbor, see docs/design.md and docs/deidentification.md):

- direct identifiers (name, MRN, SSN, phone, email, address, external id, any unknown patient or
  record key) are dropped;
- the patient becomes ``HMAC-SHA256(PSEUDONYM_KEY, source, mrn)``: stable under one key, useless
  without it; the key lives in the environment only;
- dates become years; the age at the encounter is kept, with every age over 89 reported as the
  single band "90+"; ZIP becomes its first three digits, or "000" for restricted prefixes;
- free text (the note, the diagnosis label and the symptoms) is scrubbed of the patient's own
  identifiers and of anything that looks like one (``cases.phi_patterns``: other people's names
  after a kinship or role word, dates and ages over 89 with digits or in words, addresses, phone,
  account, device, vehicle and licence numbers, ...), each replaced by a typed placeholder such
  as ``[NAME]``. The patient's own identifiers are matched loosely: in any letter case, with or
  without accents, apostrophes and hyphens, numbers with any separators, the birth date in the
  usual written forms, the initials, and for patients over 89 the birth year alone;
- all matching runs on the normal form of ``cases.textnorm`` (invisible characters removed,
  compatibility forms and accents undone, look-alike letters folded onto their TR39 skeleton),
  and replaces the characters as written, so the clinical text around an identifier is kept;
- findings keys are passed on as they are, so a key that holds an identifier of the case is
  refused when the case is submitted (``finding_key_identifiers``), and the residual scan
  checks keys as words (``key_words``).

Scrubbing errs on the side of privacy: a bare number of six or more digits is taken for an
identifier (it may be an MRN or an account number), even when it was a lab value written without
thousands separators. Decimal values ("Temp 38.6"), ratios ("BP 120/80") and percentages
("SpO2 91%") survive.

Bump ``safe_harbor.POLICY_VERSION`` whenever the output of this package changes for the same input:
every de-identified record and every dataset records the version that produced it.

The modules, each importing only those above it in this list:

- ``safe_harbor``: the policy's version and generalisations (pseudonym, age band, ZIP);
- ``identifiers``: a patient's own identifiers as alternatives, initials and numbers;
- ``matchers``: the alternatives matched without the joined regex (speed without a second definition);
- ``scrubbing``: ``OwnIdentifiers``, ``scrub_text``, the findings-key and residual checks of one case;
- ``records``: ``deidentify``, the de-identified record, and its sha256;
- ``residual``: ``ResidualIndex`` and the residual keys, for the scan of a whole dataset.

Nothing is re-exported here: import from the module that owns a name.
"""
