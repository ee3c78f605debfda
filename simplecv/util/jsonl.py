"""JSON-lines record files (one JSON object a line): the training and evaluation logs."""

import json

from simplecv.core.checkpoint import atomic_write
from simplecv.util.output_guard import writing


def read_records(path):
    """Return the records of a JSON-lines file, skipping a torn last line (a run killed while appending)."""
    records = []
    with open(path) as stream:
        for line in stream:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def append_record(path, record, what):
    """Append one record; a full or read-only disk raises :class:`OutputError` naming ``what`` and ``path``."""
    with writing(path, what), open(path, 'a') as stream:
        stream.write(json.dumps(record) + '\n')


def keep_records_until(path, step, what):
    """Rewrite ``path`` (atomically) without the records after ``step``: a resumed run writes them again."""
    kept = [r for r in read_records(path) if r['step'] <= step]

    def write(tmp):
        with open(tmp, 'w') as stream:
            stream.writelines(json.dumps(r) + '\n' for r in kept)

    with writing(path, what):
        atomic_write(path, write)
