"""`claimwire claims PATH... [--jsonl]` and `claimwire claims search`, as users run them.

The command runs as a subprocess; search reads a real database (SQLite and a fresh
PostgreSQL database) filled by the claims step. Every text is invented for these tests.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from tests.conftest import ROOT, claimwire, cli_env
from tests.test_claims_clustering import GAZETTE, HERALD, WIRE, claims_settings, new  # noqa: F401
from tests.test_cli_new_user import on_terminal
from tests.test_dedup import (
    T,
    any_settings,  # noqa: F401  (fixture)
    pg_settings,  # noqa: F401  (fixture)
    sqlite_settings,  # noqa: F401  (fixture)
)
from worker.claims import store
from worker.core.db import get_engine
from worker.core.settings import Settings

FIELDS = {"file", "speaker", "speaker_resolved", "verb", "kind", "text", "start", "end", "sentence"}


def run_claims(
    args: list[str], tmp_path: Path, **env: str
) -> tuple[int, list[dict[str, object]], str]:
    r = claimwire(["claims", *args], cli_env(tmp_path, **env), ROOT)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return r.returncode, rows, r.stderr


def test_claims_jsonl_fields_and_exact_offsets(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.txt"
    # CRLF line ends, a BOM-less UTF-8 text with curly quotes and non-ASCII before the claims
    text = (
        "Zürich – Wednesday\r\n\r\n"
        "“The bridge will reopen in April,” Maria Novak said.\r\n\r\n"
        "According to the weather service, the storm will reach the coast by Friday.\r\n"
        'Novak said the strike was "planned abroad by agitators" and would fail.\r\n'
    )
    crlf.write_bytes(text.encode("utf-8"))
    german = tmp_path / "de.txt"
    german.write_text("Die Ministerin sagte, dass der Streik im Ausland geplant worden sei.\n")
    code, rows, err = run_claims(["--jsonl", str(crlf), str(german)], tmp_path)
    assert code == 0, err
    assert rows and all(set(r) == FIELDS for r in rows)
    assert {r["file"] for r in rows} == {str(crlf)}  # the German file: skipped, no error
    raw = crlf.read_bytes().decode("utf-8")
    for r in rows:
        start, end = r["start"], r["end"]
        assert isinstance(start, int) and isinstance(end, int)
        assert raw[start:end] == r["text"]
        assert r["text"] in str(r["sentence"])
    kinds = {str(r["text"]): r["kind"] for r in rows}
    assert kinds["“The bridge will reopen in April,”"] == "direct"
    assert kinds["the storm will reach the coast by Friday"] == "according_to"
    mixed = next(r for r in rows if "planned abroad" in str(r["text"]))
    assert mixed["kind"] == "mixed"
    assert mixed["speaker"] == "Novak" and mixed["speaker_resolved"] == "Maria Novak"
    assert mixed["verb"] == "say"


def test_claims_pretty_output_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("The harbour master said that the ferry had been delayed by fog.\n")
    r = claimwire(["claims", str(f)], cli_env(tmp_path), ROOT)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["speaker"] == "The harbour master" and obj["kind"] == "indirect"

    code, rows, err = run_claims([str(tmp_path / "missing.txt")], tmp_path)
    assert code != 0 and rows == []
    assert "cannot read" in err and "Traceback" not in err

    code, rows, err = run_claims([str(f)], tmp_path, SPACY_MODEL="no_such_spacy_model")
    assert code != 0 and rows == []
    assert "no_such_spacy_model" in err and "CLAIMWIRE_SPACY_MODEL" in err
    assert "Traceback" not in err


def test_a_file_or_directory_named_search_or_cluster_is_read_as_dot_slash_name(
    tmp_path: Path,
) -> None:
    """A directory named `search` (or a file named `cluster`) could not be read: the
    subcommand won, and `claims search search/a.txt` ran a search of the database,
    ignoring the path. `./search` reads it; the subcommand, run where such a path is,
    says so; a path after `search`, and a search option given to files, are refused
    with the way that works."""
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "a.txt").write_text("The harbour master said that the ferry had been delayed.\n")
    env = cli_env(tmp_path)

    read = claimwire(["claims", "./search", "--jsonl"], env, tmp_path)
    assert read.returncode == 0, read.stderr
    assert [json.loads(line)["file"] for line in read.stdout.splitlines()] == ["search/a.txt"]

    searched = claimwire(["claims", "search"], env, tmp_path)
    assert searched.returncode == 0, searched.stderr
    assert "to read the directory named search here, write `claimwire claims ./search`" in (
        searched.stderr
    )
    mixed = claimwire(["claims", "search", "search/a.txt"], env, tmp_path)
    assert mixed.returncode == 2 and mixed.stdout == ""
    assert "`claims search` takes options, not paths ('search/a.txt')" in mixed.stderr
    assert "write ./search" in mixed.stderr

    (tmp_path / "cluster").write_text("The mayor said that the bridge would reopen.\n")
    cluster = claimwire(["claims", "cluster"], env, tmp_path)
    assert cluster.returncode == 2
    assert "to read a file or directory named cluster, write ./cluster" in cluster.stderr
    assert "to read the file named cluster here" in cluster.stderr

    stray = claimwire(["claims", "./cluster", "--speaker", "mayor"], env, tmp_path)
    assert stray.returncode == 2 and stray.stdout == ""
    assert "--speaker: options of `claims search`, not of reading files" in stray.stderr

    helped = claimwire(["claims", "--help"], {**env, "COLUMNS": "200"}, tmp_path)
    assert "./search" in helped.stdout and "./cluster" in helped.stdout


def _fill(settings: Settings) -> dict[str, int]:
    ids = {
        "herald": new(settings, HERALD, "herald.example", 2),
        "wire": new(settings, WIRE, "wire.example", 1),
        "gazette": new(settings, GAZETTE, "gazette.example", 24 * 10),
    }
    for aid in ids.values():
        with Session(get_engine(settings)) as s:
            assert store.process_claims(s, aid, settings)
            s.commit()
    return ids


def test_claims_search_table_and_jsonl(claims_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    s = claims_settings
    _fill(s)
    env = cli_env(tmp_path, DATABASE_URL=s.effective_database_url)
    env["COLUMNS"] = "220"  # a wide terminal, so rich does not wrap the cells

    r = claimwire(["claims", "search", "--speaker", "novak", "--text", "agitators"], env, ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stdout.splitlines() if "example" in line]
    assert len(lines) == 2, r.stdout
    header = r.stdout.splitlines()[1]
    for col in ("date", "outlet", "speaker", "claim", "cluster", "outlets"):
        assert col in header, header
    # newest first, each with its outlet and publication date
    assert "herald.example" in lines[0] and (T + timedelta(hours=2)).date().isoformat() in lines[0]
    assert "wire.example" in lines[1]
    assert all("Maria Novak" in line for line in lines)
    assert "Brandt" not in r.stdout and "hospital" not in r.stdout

    r = claimwire(["claims", "search", "--text", "steelworks", "--jsonl"], env, ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert {row["outlet"] for row in rows} == {"herald.example", "wire.example", "gazette.example"}
    novak = [row for row in rows if "Novak" in row["speaker"]]
    assert len({row["cluster_id"] for row in novak}) == 1
    assert all(row["cluster_outlets"] == 2 and row["cluster_articles"] == 2 for row in novak)

    since = (T + timedelta(days=5)).date().isoformat()
    r = claimwire(
        ["claims", "search", "--text", "steelworks", "--since", since, "--jsonl"], env, ROOT
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["outlet"] for row in rows] == ["gazette.example"]
    assert rows[0]["speaker"] == "Karl Brandt"

    r = claimwire(["claims", "search", "--speaker", "nobody-by-that-name"], env, ROOT)
    assert r.returncode == 0 and "example" not in r.stdout
    # no empty table: one line saying nothing matched (audit LOW 14)
    assert r.stdout == "", r.stdout
    assert "claimwire: no stored claim with --speaker 'nobody-by-that-name'" in r.stderr


def test_claims_skips_and_counts_what_it_cannot_read_and_goes_on(tmp_path: Path) -> None:
    """Non-English files are skipped and counted, an unreadable file does not stop the
    files after it, a BOM is not part of a speaker, and a directory gives its *.txt."""
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    latin1 = folder / "a_latin1.txt"
    latin1.write_bytes("The café owner said that the rent had doubled.\n".encode("latin-1"))
    bom = folder / "sub" / "b_bom.txt"
    bom.write_bytes("\ufeffThe ferry captain said that the crossing was closed.\n".encode())
    german = folder / "c_de.txt"
    german.write_text("Die Ministerin sagte, dass der Streik im Ausland geplant worden sei.\n")
    (folder / "notes.md").write_text("The editor said that this file is not read.\n")

    code, rows, err = run_claims(["--jsonl", str(folder)], tmp_path)
    assert code == 2 and "Traceback" not in err
    assert f"cannot read {latin1}" in err and "1 of 3 file(s) could not be read" in err
    assert "skipped 1 of 3 file(s) not in English" in err and str(german) in err
    (row,) = rows  # the file after the unreadable one was still read; notes.md was not
    assert row["file"] == str(bom) and row["speaker"] == "The ferry captain"
    as_read = bom.read_text(encoding="utf-8")  # the BOM is character 0 of the text
    assert as_read[int(row["start"]) : int(row["end"])] == row["text"]
    assert "\ufeff" not in str(row["sentence"])


def test_claims_model_setting_naming_something_else_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("The harbour master said that the ferry had been delayed by fog.\n")
    # an installed package that is not a spaCy pipeline
    code, rows, err = run_claims([str(f)], tmp_path, SPACY_MODEL="pytest")
    assert code == 2 and rows == []
    assert "cannot load spaCy model 'pytest' (CLAIMWIRE_SPACY_MODEL)" in err
    assert "internal error" not in err and len(err.strip().splitlines()) == 1


def test_claims_search_by_outlet_date_range_and_outlet_count(
    claims_settings: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    s = claims_settings
    _fill(s)
    env = cli_env(tmp_path, DATABASE_URL=s.effective_database_url)

    def search(*args: str) -> list[dict[str, Any]]:
        r = claimwire(["claims", "search", "--text", "steelworks", *args, "--jsonl"], env, ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
        return [json.loads(line) for line in r.stdout.splitlines()]

    everything = search()
    assert {row["outlet"] for row in everything} == {
        "herald.example",
        "wire.example",
        "gazette.example",
    }
    # one outlet; a domain finds the hosts under it
    assert {row["outlet"] for row in search("--outlet", "herald.example")} == {"herald.example"}
    assert len(search("--outlet", "example")) == len(everything)
    # a date range: --until a date takes the whole of that day
    early = search("--until", (T + timedelta(days=1)).date().isoformat())
    assert early and "gazette.example" not in {row["outlet"] for row in early}
    assert {
        row["outlet"] for row in search("--since", (T + timedelta(days=5)).date().isoformat())
    } == {"gazette.example"}
    # claims whose cluster spans two or more outlets: Novak's, repeated by two
    spread = search("--min-outlets", "2")
    assert spread and all(row["cluster_outlets"] >= 2 for row in spread)
    assert len(spread) < len(everything)
    assert search("--min-outlets", "3") == []


def test_claims_cluster_shows_first_seen_counts_and_members_in_time_order(
    claims_settings: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    s = claims_settings
    _fill(s)
    env = cli_env(tmp_path, DATABASE_URL=s.effective_database_url)
    env["COLUMNS"] = "220"
    r = claimwire(
        ["claims", "search", "--speaker", "novak", "--text", "agitators", "--jsonl"], env, ROOT
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (cluster_id,) = {json.loads(line)["cluster_id"] for line in r.stdout.splitlines()}
    first_seen = json.loads(r.stdout.splitlines()[0])["cluster_first_seen"]
    assert first_seen == (T + timedelta(hours=1)).isoformat()  # the wire's, published first

    r = claimwire(["claims", "cluster", str(cluster_id), "--jsonl"], env, ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["first_seen_at"] == first_seen and report["first_outlet"] == "wire.example"
    assert (report["n_articles"], report["n_outlets"]) == (2, 2)
    assert [m["outlet"] for m in report["members"]] == ["wire.example", "herald.example"]
    assert report["text"] == report["members"][0]["text"]  # the first seen wording

    r = claimwire(["claims", "cluster", str(cluster_id)], env, ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 article(s) in 2 outlet(s)" in r.stdout
    (first,) = [line for line in r.stdout.splitlines() if line.startswith("first seen: ")]
    assert "wire.example" in first and (T + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M") in first
    # every repeat in time order, one numbered block each: time, outlet and kind, then
    # the wording and the link indented under it
    blocks = r.stdout.split("repeats in time order:\n", 1)[1].split("\n  2. ")
    assert len(blocks) == 2 and blocks[0].startswith("  1. "), r.stdout
    assert "wire.example  first" in blocks[0] and "“" in blocks[0]
    assert "herald.example  rewording" in blocks[1] and "“" in blocks[1]
    assert "/wire" in blocks[0] or "wire.example/" in blocks[0]

    # at 80 columns every line fits, and a wording is wrapped, not cut
    status, shown = on_terminal(["claims", "cluster", str(cluster_id)], env, ROOT, columns=80)
    assert status == 0, shown[-2000:]
    assert all(len(line) <= 80 for line in shown.splitlines() if "://" not in line), shown
    assert " ".join(report["members"][1]["text"].split()) in " ".join(shown.split())

    r = claimwire(["claims", "cluster", "999999"], env, ROOT)
    assert r.returncode == 2 and "no claim cluster 999999" in r.stderr


def test_claims_search_limit_is_checked_and_a_cut_is_said(
    claims_settings: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`--limit -1` was an internal error on PostgreSQL (LIMIT must not be negative), and
    a result cut at the limit looked complete."""
    s = claims_settings
    _fill(s)
    env = cli_env(tmp_path, DATABASE_URL=s.effective_database_url)
    r = claimwire(["claims", "search", "--limit", "-1"], env, ROOT)
    assert r.returncode == 2 and "internal error" not in r.stderr
    assert "--limit" in r.stderr and len(r.stderr.strip().splitlines()) == 1

    r = claimwire(
        ["claims", "search", "--text", "steelworks", "--limit", "1", "--jsonl"], env, ROOT
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.splitlines()) == 1
    assert "showing the newest 1 matching claims; more match" in r.stderr

    r = claimwire(["claims", "search", "--text", "steelworks", "--jsonl"], env, ROOT)
    assert r.returncode == 0 and len(r.stdout.splitlines()) > 1 and "more match" not in r.stderr
