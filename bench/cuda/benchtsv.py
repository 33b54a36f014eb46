# Reading the tab-separated files of `horizon bench cuda --out` and bench/cuda/torch_anchor.py: the first line is a
# comment "# NAME<TAB>key=value<TAB>...", then a header line, then one row per measurement.
import math

INTS = ("batch", "heads", "kv_heads", "tokens", "head_dim")
FLOATS = ("ms", "rate")

def read_tsv(path):
    meta, header, rows = {}, None, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("#"):
                for field in line.split("\t")[1:]:
                    key, _, value = field.partition("=")
                    meta[key] = value
                continue
            cells = line.split("\t")
            if header is None:
                header = cells
                continue
            row = dict(zip(header, cells + [""] * (len(header) - len(cells))))
            for key in INTS:
                if key in row:
                    row[key] = int(row[key])
            for key in FLOATS:
                if key in row:
                    try:
                        row[key] = float(row[key])
                    except ValueError:
                        row[key] = math.nan
            rows.append(row)
    return meta, rows

def detail(row, key):
    """The value of key=value in the row's detail column, or None."""
    for pair in row.get("detail", "").split():
        k, _, v = pair.partition("=")
        if k == key:
            return v
    return None

def shape_key(row):
    return (row["kind"], row["batch"], row["heads"], row["kv_heads"], row["tokens"], row["head_dim"])
