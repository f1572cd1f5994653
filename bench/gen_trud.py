#!/usr/bin/env python3
"""Seeded generator of national-scale SYNTHETIC TRUD XML releases (HSCOrgRefData v2-0-0).

Writes a release zip as TRUD ships it (outer zip holding fullfile.zip and archive.zip, each holding
one HSCOrgRefData_{Full,Archive}_YYYYMMDD.xml) in the exact layout of REFERENCE.md section 10:
Manifest (RecordCount, PrimaryRoleScope), CodeSystems, then one <Organisation> per record with
dates by Type, OrgId, Status, LastChangeDate, GeoLoc/Location (UPRN on some), Contacts, Roles,
Rels (with the target's primary role) and Succs, and refOnly stubs (about 3% of the full file,
13% of the archive). The data are invented: codes, names and addresses are not ODS data.

  gen_trud.py --out DIR [--full 306201] [--archive 86705] [--seed 42] [--month 1]

--month 2 writes the next month's release of the same seed: 0.5% organisations added, 0.2%
removed, 2% changed (renames, closures, address and telephone changes, new commissioners), and
a publication date one month later. Byte-identical output for the same arguments.
"""

import argparse
import io
import os
import random
import zipfile

ROOT = "2.16.840.1.113883.2.1.3.2.4.18.48"
NS = "http://refdata.hscic.gov.uk/org/v2-0-0"

# (role, display name, share of records, record class, code style)
ROLES = [
    ("RO177", "PRESCRIBING COST CENTRE", 0.09, "RC1", "practice"),
    ("RO96", "BRANCH SURGERY", 0.06, "RC2", "site"),
    ("RO198", "NHS TRUST SITE", 0.12, "RC2", "site"),
    ("RO182", "PHARMACY", 0.10, "RC1", "pharmacy"),
    ("RO157", "NON-NHS ORGANISATION", 0.20, "RC1", "other"),
    ("RO172", "INDEPENDENT SECTOR HEALTHCARE PROVIDER", 0.08, "RC1", "other"),
    ("RO76", "GP PRACTICE", 0.10, "RC1", "practice"),
    ("RO180", "PRIMARY CARE TRUST SITE", 0.05, "RC2", "site"),
    ("RO87", "OPTICAL HEADQUARTERS", 0.05, "RC1", "other"),
    ("RO108", "CARE HOME HQ", 0.06, "RC1", "other"),
    ("RO104", "SOCIAL CARE SITE", 0.08, "RC2", "site"),
    ("RO197", "NHS TRUST", 0.001, "RC1", "trust"),
    ("RO98", "SUB ICB LOCATION", 0.0005, "RC1", "trust"),
    ("RO261", "INTEGRATED CARE BOARD", 0.0001, "RC1", "trust"),
]
EXTRA_ROLES = [("RO209", "NHS ENGLAND (REGION)"), ("RO210", "NHS ENGLAND (REGION, LOCAL OFFICE)"),
               ("RO218", "COMMISSIONING HUB"), ("RO132", "HEALTH AUTHORITY")]
TOWNS = ["LEEDS", "YORK", "BRISTOL", "NORWICH", "EXETER", "DERBY", "READING", "LUTON", "BATH", "HULL",
         "CARDIFF", "SWANSEA", "NEWPORT", "PRESTON", "WIGAN", "BOLTON", "OXFORD", "DOVER", "ELY", "RYDE"]
COUNTIES = ["WEST YORKSHIRE", "NORFOLK", "DEVON", "AVON", "KENT", "LANCASHIRE", "OXFORDSHIRE", "SUFFOLK"]
STREETS = ["HIGH STREET", "STATION ROAD", "CHURCH LANE", "MILL ROAD", "PARK AVENUE", "LONDON ROAD",
           "THE GREEN", "VICTORIA STREET", "KING'S ROAD", "MARKET PLACE"]
WORDS = ["MEDICAL", "HEALTH", "CENTRE", "SURGERY", "PHARMACY", "CARE", "GROUP", "PRACTICE", "CLINIC",
         "HOUSE", "LODGE", "COURT", "VALLEY", "BRIDGE", "HILL", "PARK", "ST MARY'S", "A & E", "NORTH"]


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&apos;")


def date_el(kind, start, end, ind):
    e = f'<End value="{end}"/>' if end else ""
    return f'{ind}<Date><Type value="{kind}"/><Start value="{start}"/>{e}</Date>\n'


def ymd(rng, lo=1974, hi=2024):
    return f"{rng.randint(lo, hi):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


class Org:
    __slots__ = ("code", "name", "rc", "role", "stub", "op_start", "op_end", "legal_start", "lcd",
                 "addr", "town", "county", "postcode", "uprn", "tel", "web", "rels", "succs",
                 "extra_role", "rid")


def new_org(rng, n, archived):
    o = Org()
    r = rng.random()
    acc = 0.0
    role = ROLES[-1]
    for entry in ROLES:
        acc += entry[2]
        if r < acc:
            role = entry
            break
    o.role = role[0]
    o.rc = role[3]
    # Unique codes: a style prefix and the record number keep them distinct and code-shaped.
    o.code = f"{'G' if role[4] == 'practice' else 'F' if role[4] == 'pharmacy' else 'S' if role[4] == 'site' else 'T' if role[4] == 'trust' else 'N'}{n:07d}"
    o.stub = rng.random() < (0.13 if archived else 0.033)
    o.name = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
    o.op_start = ymd(rng, 1974, 2016 if archived else 2025)
    o.op_end = ymd(rng, 2000, 2017)[:4] + "-03-31" if archived else (ymd(rng, 2017, 2025) if rng.random() < 0.12 else None)
    if archived and o.op_end < o.op_start:
        o.op_end = o.op_start
    o.legal_start = o.op_start if rng.random() < 0.5 else None
    o.lcd = ymd(rng, 2012, 2017 if archived else 2026)
    o.addr = [f"{rng.randint(1, 400)} {rng.choice(STREETS)}"] + ([rng.choice(WORDS) + " HOUSE"] if rng.random() < 0.5 else [])
    o.town = rng.choice(TOWNS)
    o.county = rng.choice(COUNTIES) if rng.random() < 0.8 else None
    o.postcode = f"{rng.choice('ABDEHLMNS')}{rng.choice('ABELNS')}{rng.randint(1, 29)} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
    o.uprn = str(rng.randint(10_000_000, 999_999_999)) if rng.random() < 0.3 else None
    o.tel = f"0{rng.randint(1000, 2999)} {rng.randint(100000, 999999)}" if rng.random() < 0.7 else None
    o.web = f"https://www.{o.code.lower()}.nhs.uk" if rng.random() < 0.1 else None
    o.rid = 10 * n + 1
    o.extra_role = rng.choice(EXTRA_ROLES)[0] if rng.random() < 0.1 else None
    o.rels = []
    if not o.stub:
        for k in range(rng.choice((1, 1, 2, 2, 3, 4))):
            kind = "RE6" if role[3] == "RC2" and k == 0 else rng.choice(("RE4", "RE5", "RE4"))
            target = f"T{rng.randint(0, 400):07d}" if kind == "RE6" else f"Q{rng.randint(1, 99):02d}"
            end = ymd(rng, 2001, 2020) if k > 0 and rng.random() < 0.6 else None
            o.rels.append((kind, target, rng.choice(("RO197", "RO98", "RO261", "RO209")), ymd(rng, 1990, 2019), end, 10 * n + k + 2_000_000_000))
    o.succs = []
    if rng.random() < 0.04:
        o.succs.append(("Successor" if o.op_end else "Predecessor", f"N{rng.randint(0, 9_999_999):07d}", o.role, ymd(rng, 2000, 2024), n + 3_000_000_000, rng.random() < 0.3))
    return o


def org_xml(o):
    out = [f'  <Organisation orgRecordClass="{o.rc}"' + (' refOnly="true"' if o.stub else "") + ">\n",
           f"    <Name>{esc(o.name)}</Name>\n",
           date_el("Operational", o.op_start, o.op_end, "    ")]
    if o.legal_start:
        out.append(date_el("Legal", o.legal_start, o.op_end, "    "))
    out.append(f'    <OrgId root="{ROOT}" assigningAuthorityName="HSCIC" extension="{o.code}"/>\n')
    out.append(f'    <Status value="{"Inactive" if o.op_end else "Active"}"/>\n')
    out.append(f'    <LastChangeDate value="{o.lcd}"/>\n')
    if not o.stub:
        loc = "".join(f"<AddrLn{i + 1}>{esc(a)}</AddrLn{i + 1}>" for i, a in enumerate(o.addr))
        loc += f"<Town>{o.town}</Town>"
        if o.county:
            loc += f"<County>{o.county}</County>"
        loc += f"<PostCode>{o.postcode}</PostCode><Country>ENGLAND</Country>"
        if o.uprn:
            loc += f"<UPRN>{o.uprn}</UPRN>"
        out.append(f"    <GeoLoc>\n      <Location>{loc}</Location>\n    </GeoLoc>\n")
        contacts = ""
        if o.tel:
            contacts += f'<Contact type="tel" value="{o.tel}"/>'
        if o.web:
            contacts += f'<Contact type="http" value="{o.web}"/>'
        if contacts:
            out.append(f"    <Contacts>{contacts}</Contacts>\n")
    status = "Inactive" if o.op_end else "Active"
    out.append("    <Roles>\n")
    out.append(f'      <Role id="{o.role}" uniqueRoleId="{o.rid}" primaryRole="true">\n')
    out.append(date_el("Operational", o.op_start, o.op_end, "        "))
    out.append(f'        <Status value="{status}"/>\n      </Role>\n')
    if o.extra_role:
        out.append(f'      <Role id="{o.extra_role}" uniqueRoleId="{o.rid + 5}">\n')
        out.append(date_el("Operational", o.op_start, None, "        "))
        out.append('        <Status value="Active"/>\n      </Role>\n')
    out.append("    </Roles>\n")
    if o.rels:
        out.append("    <Rels>\n")
        for kind, target, trole, start, end, uid in o.rels:
            out.append(f'      <Rel id="{kind}" uniqueRelId="{uid}">\n')
            out.append(date_el("Operational", start, end, "        "))
            out.append(f'        <Status value="{"Inactive" if end else "Active"}"/>\n')
            out.append(f'        <Target>\n          <OrgId root="{ROOT}" assigningAuthorityName="HSCIC" extension="{target}"/>\n'
                       f'          <PrimaryRoleId id="{trole}" uniqueRoleId="{uid + 7}"/>\n        </Target>\n      </Rel>\n')
        out.append("    </Rels>\n")
    if o.succs:
        out.append("    <Succs>\n")
        for kind, target, trole, start, uid, forward in o.succs:
            fwd = ' forwardSuccession="true"' if forward else ""
            out.append(f'      <Succ uniqueSuccId="{uid}"{fwd}>\n')
            out.append(date_el("Legal", start, None, "        "))
            out.append(f"        <Type>{kind}</Type>\n")
            out.append(f'        <Target>\n          <OrgId root="{ROOT}" assigningAuthorityName="HSCIC" extension="{target}"/>\n'
                       f'          <PrimaryRoleId id="{trole}" uniqueRoleId="{uid + 3}"/>\n        </Target>\n      </Succ>\n')
        out.append("    </Succs>\n")
    out.append("  </Organisation>\n")
    return "".join(out)


def header(kind, published, count):
    roles = [(r[0], r[1]) for r in ROLES] + EXTRA_ROLES
    scope = "".join(f'      <PrimaryRole id="{i}" displayName="{esc(n)}"/>\n' for i, n in [(r[0], r[1]) for r in ROLES])
    concepts = "".join(f'      <concept id="{i}" code="{i[2:]}" displayName="{esc(n)}"/>\n' for i, n in roles)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<HSCOrgRefData:OrgRefData xmlns:HSCOrgRefData="{NS}">\n'
        "  <Manifest>\n    <Version value=\"2-0-0\"/>\n"
        f'    <PublicationType value="{kind}"/>\n    <PublicationSource value="HSCIC"/>\n'
        f'    <PublicationDate value="{published}"/>\n    <PublicationSeqNum value="1"/>\n'
        f'    <FileCreationDateTime value="{published}T03:00:00"/>\n'
        f'    <RecordCount value="{count}"/>\n'
        '    <ContentDescription value="SYNTHETIC release from odsync bench/gen_trud.py: not ODS data"/>\n'
        f"    <PrimaryRoleScope>\n{scope}    </PrimaryRoleScope>\n  </Manifest>\n"
        "  <CodeSystems>\n"
        '    <CodeSystem name="OrganisationRecordClass" oid="2.16.840.1.113883.2.1.3.2.4.23">\n'
        '      <concept id="RC1" code="1" displayName="HSCOrg"/>\n      <concept id="RC2" code="2" displayName="HSCSite"/>\n    </CodeSystem>\n'
        f'    <CodeSystem name="OrganisationRole" oid="2.16.840.1.113883.2.1.3.2.4.17.507">\n{concepts}    </CodeSystem>\n'
        "  </CodeSystems>\n  <Organisations>\n"
    )


FOOTER = "  </Organisations>\n</HSCOrgRefData:OrgRefData>\n"


def mutate(rng, orgs, next_n, archived):
    """The next month: 0.2% removed, 2% changed, 0.5% added."""
    n = len(orgs)
    removed = set(rng.sample(range(n), int(n * 0.002)))
    kept = [o for i, o in enumerate(orgs) if i not in removed]
    for i in rng.sample(range(len(kept)), int(n * 0.02)):
        o = kept[i]
        what = rng.random()
        if what < 0.3:
            o.name = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
        elif what < 0.5 and not o.op_end:
            o.op_end = "2026-09-30"
        elif what < 0.7:
            o.addr = [f"{rng.randint(1, 400)} {rng.choice(STREETS)}"]
        elif what < 0.85:
            o.tel = f"0{rng.randint(1000, 2999)} {rng.randint(100000, 999999)}"
        else:
            o.rels = o.rels + [("RE4", f"Q{rng.randint(1, 99):02d}", "RO261", "2026-09-01", None, 4_000_000_000 + i)]
        o.lcd = "2026-09-15"
    added = [new_org(rng, next_n + k, archived) for k in range(int(n * 0.005))]
    return kept + added


def write_release(path, published, files):
    stamp = published.replace("-", "")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as outer:
        for kind, inner_name, orgs in files:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as inner:
                info = zipfile.ZipInfo(f"HSCOrgRefData_{kind}_{stamp}.xml", date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with inner.open(info, "w") as f:
                    f.write(header(kind, published, len(orgs)).encode())
                    chunk = []
                    for o in orgs:
                        chunk.append(org_xml(o))
                        if len(chunk) >= 5000:
                            f.write("".join(chunk).encode())
                            chunk = []
                    f.write("".join(chunk).encode())
                    f.write(FOOTER.encode())
            info = zipfile.ZipInfo(inner_name, date_time=(2026, 1, 1, 0, 0, 0))
            outer.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_STORED)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--full", type=int, default=306_201)
    ap.add_argument("--archive", type=int, default=86_705)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--month", type=int, default=1, choices=(1, 2))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    full = [new_org(rng, n, False) for n in range(args.full)]
    archive = [new_org(rng, args.full + n, True) for n in range(args.archive)]
    published = "2026-08-28"
    if args.month == 2:
        mrng = random.Random(args.seed * 1000 + 2)
        full = mutate(mrng, full, args.full + args.archive, False)
        published = "2026-09-25"
    name = f"hscorgrefdataxml_data_{published.replace('-', '')}_month{args.month}.zip"
    path = os.path.join(args.out, name)
    write_release(path, published, [("Full", "fullfile.zip", full), ("Archive", "archive.zip", archive)])
    print(path)


if __name__ == "__main__":
    main()
