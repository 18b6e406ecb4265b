r"""Generate realistic synthetic FluentD files of Kaspersky Security Center exports.

FluentD's `in_syslog` (RFC 5424) and `out_file` formatter write one event a line,
`<time>\t<tag>\t<JSON record>`. A real line, shortened, with its TABs as `\t`:

    2022-02-28T15:48:55+00:00\tkav_logs.user.crit\t{"host":"host-01.example.local",
    "ident":"KES|11.0.0.0","pid":"-","msgid":"GNRL_EV_VIRUS_FOUND",
    "extradata":"[event@23668 p2=\"C:\\\\Users\\\\user1\\\\eicar.com\" ...]",
    "message":"Result description: Detected\\r\\nType: Virus\\r\\n..."}

`generate()` writes a chosen number of distinct events in the object layout of
FluentD's storage outputs, `kav/%Y/%m/%d/<name>_<time_slice>_<index>.log[.gz|.zst]`.
It adds re-uploaded chunks (a FluentD retry copies a whole chunk to the object
with the next index), broken lines and other products' syslog lines. The
manifest it returns accounts for every line, and a copy is stored as
`_manifest.json` in the output folder.

Run it as

    python -m benchmarks.synthetic sample_data/synthetic --events 2000 --seed 7

The same arguments and seed always produce the same bytes.
"""

from __future__ import annotations

import argparse
import calendar
import gzip
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import zstandard

# Items of a Kaspersky message body are separated by these literal four
# characters (backslash, r, backslash, n), not by a real CR LF.
BODY_SEPARATOR = "\\r\\n"
BOM = "\ufeff"
KASPERSKY_SD_ID = "event@23668"
MSGID_MAX_LENGTH = 32
MANIFEST_NAME = "_manifest.json"
COMPRESSIONS = ("mixed", "gzip", "zstd", "none")
SUFFIXES = {"gzip": ".log.gz", "zstd": ".log.zst", "none": ".log"}

# NOTE: no public sample shows the APP-NAME that the Administration Server puts
# on its own events (KLSRV_*, KLAUD_*). "1093" is the product name that KSC's
# API gives the Administration Server, so the generator uses it.
KSC_IDENT = "1093|1.0.0.0"

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# Formatting: structured data, message body, record and line.


def escape_sd_value(value: str) -> str:
    """Escape an SD-PARAM value as RFC 5424 requires: `\\`, `"` and `]`."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_extradata(sd_id: str, params: Sequence[tuple[str, str]]) -> str:
    """Format one SD-ELEMENT, `[event@23668 et="..." ...]`, with escaped values."""
    body = "".join(f' {name}="{escape_sd_value(value)}"' for name, value in params)
    return f"[{sd_id}{body}]"


def format_message(
    items: Sequence[tuple[str, str]],
    separator: str = ": ",
    bom: bool = False,
    trailing: bool = False,
) -> str:
    """Join `(key, value)` body items with the literal `\\r\\n`.

    An empty key writes the value alone, as free-text items and empty items
    appear in real bodies. Backslashes in values stay unescaped, as KSC sends
    them.
    """
    body = BODY_SEPARATOR.join(
        f"{key}{separator}{value}" if key else value for key, value in items
    )
    if trailing:
        body += BODY_SEPARATOR
    return BOM + body if bom else body


def format_record(
    host: str, ident: str, msgid: str, extradata: str, message: str, pid: str = "-"
) -> str:
    """Encode the JSON record as FluentD's `in_syslog` RFC 5424 parser fills it."""
    record = {
        "host": host,
        "ident": ident,
        "pid": pid,
        "msgid": msgid,
        "extradata": extradata,
        "message": message,
    }
    return _JSON.encode(record)


def format_fluentd_time(epoch: int, offset_minutes: int) -> str:
    """Format a UTC epoch second as FluentD does on a host at that UTC offset."""
    local = time.gmtime(epoch + offset_minutes * 60)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", local) + f"{sign}{hours:02d}:{minutes:02d}"
    )


def ipv4_to_uint(address: str) -> int:
    """Convert dotted IPv4 to the unsigned integer KSC sends (`10.7.14.110` ->
    168234606)."""
    a, b, c, d = (int(part) for part in address.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


# Vocabularies.

_FIRST_NAMES = {
    "en": (
        "james mary john patricia robert jennifer michael linda william elizabeth "
        "david barbara richard susan joseph jessica thomas sarah charles karen "
        "daniel nancy matthew lisa anthony betty mark sandra paul ashley steven "
        "emily andrew donna kevin michelle brian carol george amanda"
    ).split(),
    "ru": (
        "aleksandr dmitry sergey elena olga natalia ivan maria andrey anna "
        "pavel irina nikolay svetlana"
    ).split(),
    "es": "juan maria carlos ana luis carmen jose lucia pedro sofia diego".split(),
    "de": "lukas anna jonas lea felix laura paul sophie max julia jan lena".split(),
}
_LAST_NAMES = {
    "en": (
        "smith johnson williams brown jones garcia miller davis rodriguez martinez "
        "hernandez lopez wilson anderson thomas taylor moore jackson martin lee "
        "thompson white harris clark lewis robinson walker young allen king"
    ).split(),
    "ru": (
        "ivanov petrov sidorov smirnov kuznetsov popova volkova sokolov lebedev "
        "morozova novikov fedorova"
    ).split(),
    "es": (
        "garcia fernandez gonzalez rodriguez lopez martinez sanchez perez gomez "
        "martin ruiz diaz"
    ).split(),
    "de": (
        "mueller schmidt schneider fischer weber meyer wagner becker schulz "
        "hoffmann koch richter"
    ).split(),
}

_ROLES = {
    "en": {"initiator": "Initiator", "active": "Active user", "system": "System user"},
    "ru": {
        "initiator": "Инициатор",
        "active": "Активный пользователь",
        "system": "Системный пользователь",
    },
    "es": {
        "initiator": "Iniciador",
        "active": "Usuario activo",
        "system": "Usuario del sistema",
    },
    "de": {
        "initiator": "Initiator",
        "active": "Aktiver Benutzer",
        "system": "Systembenutzer",
    },
}
_SYSTEM_USER = {
    "en": "NT AUTHORITY\\SYSTEM",
    "ru": "NT AUTHORITY\\СИСТЕМА",
    "es": "NT AUTHORITY\\SYSTEM",
    "de": "NT-AUTORITÄT\\SYSTEM",
}

EICAR_SHA256 = "275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F"
EICAR_MD5 = "44D88612FEA8A8F36DE82E1278ABB02F"

# (verdict name, threat type code p8, English threat type)
_MALWARE = (
    ("EICAR-Test-File", "60", "Virus"),
    ("HEUR:Trojan.Win32.Generic", "61", "Trojan program"),
    ("Trojan-Ransom.Win32.Crypmod.gen", "61", "Trojan program"),
    ("HEUR:Trojan-PSW.Win32.Stealer.gen", "61", "Trojan program"),
    ("Trojan.MSOffice.SAgent.gen", "61", "Trojan program"),
    ("HEUR:Trojan-Downloader.Script.Generic", "61", "Trojan program"),
    ("HEUR:Trojan.Script.Agent.gen", "61", "Trojan program"),
    ("Trojan-Spy.Win32.Agent.gen", "61", "Trojan program"),
    ("HEUR:Exploit.MSOffice.CVE-2017-11882.gen", "62", "Malware"),
    ("UDS:DangerousObject.Multi.Generic", "62", "Malware"),
    ("PDM:Trojan.Win32.Generic", "62", "Malware"),
    ("HEUR:Backdoor.MSIL.Quasar.gen", "63", "Malware"),
    ("Backdoor.Win32.Agent.gen", "63", "Malware"),
    ("HEUR:Worm.Win32.Generic", "64", "Network worm"),
    ("Worm.VBS.Dinihou.r", "64", "Network worm"),
)
_INFECTORS = (
    ("Virus.Win32.Sality.gen", "60", "Virus"),
    ("Virus.Win32.Expiro.gen", "60", "Virus"),
    ("Virus.Win32.Neshta.a", "60", "Virus"),
    ("Virus.Win32.Ramnit.a", "60", "Virus"),
    ("Virus.MSWord.Thus.a", "60", "Virus"),
)
_RISKWARE = (
    ("not-a-virus:HEUR:RiskTool.Win32.BitCoinMiner.gen", "65"),
    ("not-a-virus:PSWTool.Win32.NetPass.gen", "65"),
    ("not-a-virus:HEUR:RemoteAdmin.Win32.RAdmin.gen", "65"),
    ("not-a-virus:RiskTool.Win32.Processhacker.a", "65"),
    ("not-a-virus:HEUR:AdWare.Win32.Agent.gen", "66"),
    ("not-a-virus:HEUR:AdWare.Script.Pusher.gen", "66"),
    ("not-a-virus:HEUR:Downloader.Win32.Generic", "66"),
)
_RISKWARE_TYPE = (
    "Legitimate software that can be used by intruders to damage your computer "
    "or personal data"
)

_FILE_NAMES = (
    "invoice_{n}.pdf.exe",
    "setup.exe",
    "document_{n}.docm",
    "report_{n}.xlsm",
    "crack.exe",
    "keygen.exe",
    "payment_{n}.js",
    "update.ps1",
    "scan_{n}.zip",
    "photo_{n}.scr",
    "driver_update.exe",
    "eicar.com",
    "KMSpico.exe",
    "tmp{h4}.tmp",
    "{h8}.dll",
    "order {n} - copy.doc",
)
_FOLDERS = (
    "C:\\Users\\{u}\\Downloads",
    "C:\\Users\\{u}\\Desktop",
    "C:\\Users\\{u}\\Documents",
    "C:\\Users\\{u}\\AppData\\Local\\Temp",
    "C:\\Users\\{u}\\AppData\\Local\\Temp\\Temp1_{a}.zip",
    "C:\\Users\\{u}\\AppData\\Roaming\\Microsoft\\Windows\\Start Menu\\Programs"
    "\\Startup",
    "C:\\Windows\\Temp",
    "C:\\ProgramData\\{h8}",
    "D:\\Shares\\Finance\\{n}",
    "\\\\fs01.example.local\\profiles$\\{u}\\Documents",
)
_INETCACHE = "C:\\Users\\{u}\\AppData\\Local\\Microsoft\\Windows\\INetCache\\IE\\{H8}"

# (application name, executable, folder with a trailing backslash)
_APPLICATIONS = (
    ("Google Chrome", "chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application\\"),
    (
        "Microsoft Edge",
        "msedge.exe",
        "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\",
    ),
    ("Firefox", "firefox.exe", "C:\\Program Files\\Mozilla Firefox\\"),
    (
        "Microsoft Outlook",
        "OUTLOOK.EXE",
        "C:\\Program Files\\Microsoft Office\\root\\Office16\\",
    ),
    ("Windows Explorer", "explorer.exe", "C:\\Windows\\"),
    (
        "Microsoft Word",
        "WINWORD.EXE",
        "C:\\Program Files\\Microsoft Office\\root\\Office16\\",
    ),
    (
        "Windows PowerShell",
        "powershell.exe",
        "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\",
    ),
)
_BROWSERS = _APPLICATIONS[:3]

_DOMAIN_WORDS = (
    "adnet clickpath freesoft mailbox docshare invoices streamhub gamezone "
    "newsfeed coupons fastdl prizes"
).split()
_DOMAIN_PREFIXES = "cdn static ads track login secure update files media promo".split()
_TLDS = (".example.com", ".example.net", ".example.org", ".test")
_URL_PATHS = (
    "/",
    "/favicon.ico",
    "/js/loader.js",
    "/download/setup.exe",
    "/login.php",
    "/wp-content/uploads/{n}/{h8}.zip",
    "/track?id={h8}&ref={n}",
)
_WEB_CATEGORIES = (
    "Social networks",
    "Online games",
    "Gambling, lotteries, sweepstakes",
    "Software, audio, video",
    "Anonymizers",
    "Internet communication media",
)

# (category, type/bus, device name, device id template, VID/PID)
_DEVICES = (
    (
        "Removable drives",
        "Removable drive/USB",
        "Kingston DataTraveler 3.0",
        "USBSTOR\\DISK&VEN_KINGSTON&PROD_DATATRAVELER_3.0&REV_PMAP\\{serial}&0",
        "0951/1666",
    ),
    (
        "Removable drives",
        "Removable drive/USB",
        "SanDisk Cruzer Blade",
        "USBSTOR\\DISK&VEN_SANDISK&PROD_CRUZER_BLADE&REV_1.00\\{serial}&0",
        "0781/5567",
    ),
    (
        "Mobile devices",
        "Mobile device/USB",
        "Apple iPhone",
        "USB\\VID_05AC&PID_12A8\\{serial}",
        "05AC/12A8",
    ),
    (
        "Printers",
        "Printer/USB",
        "HP LaserJet Pro M404",
        "USB\\VID_03F0&PID_1C2A\\{serial}",
        "03F0/1C2A",
    ),
    (
        "CD/DVD drives",
        "CD/DVD drive/SATA",
        "HL-DT-ST DVDRAM GUD1N",
        "SCSI\\CDROM&VEN_HL-DT-ST&PROD_DVDRAM_GUD1N\\{serial}",
        "-",
    ),
)

# (attack name, protocol, attacked port or None for a random port)
_ATTACKS = (
    ("Bruteforce.Generic.Rdp.a", "TCP", 3389),
    ("Bruteforce.Generic.MSSQL.a", "TCP", 1433),
    ("Intrusion.Win.MS17-010.o", "TCP", 445),
    ("Intrusion.Win.CVE-2019-0708.a", "TCP", 3389),
    ("Intrusion.Generic.CVE-2021-44228.a", "TCP", 8080),
    ("Scan.Generic.PortScan.TCP", "TCP", None),
    ("Scan.Generic.PortScan.UDP", "UDP", None),
    ("DoS.Generic.SYNFlood", "TCP", 80),
)

# (task name, task kind) of KLPRCI_TaskState events
_TASKS = (
    ("Update", "update"),
    ("Malware Scan", "scan"),
    ("Critical Areas Scan", "scan"),
    ("Integrity check", "check"),
    ("Inventory", "check"),
    ("Uninstall EDR", "check"),
    ("Install application remotely", "check"),
)
# (display name sent as etdn, new state, old state)
_TASK_STATES = (
    ("Completed successfully", "Completed", "Running"),
    ("Completed successfully", "Completed", "Running"),
    ("Running", "Running", "Created"),
    ("Failed", "Failed", "Running"),
    ("Stopped", "Stopped", "Running"),
)
_TASK_ERRORS = (
    "Update source is unavailable",
    "Not enough disk space",
    "Operation timed out",
    "Access denied",
)

_PROTECTION_COMPONENTS = (
    "Exploit Prevention",
    "Behavior Detection",
    "Host Intrusion Prevention",
    "Remediation Engine",
    "File Threat Protection",
    "Web Threat Protection",
    "Mail Threat Protection",
    "Network Threat Protection",
    "AMSI Protection",
    "Firewall",
)

# Event type ids of KES for Windows that no public catalogue names.
_UNNAMED_HEX_THREAT = ("00000134", "00000141", "00000143", "0000014d", "000003fb")
_UNNAMED_HEX_INFO = {
    "000000cc": "Application settings changed",
    "000000ce": "Report storage cleaned up",
    "000000d4": "Policy applied",
    "000000d5": "Component started",
    "000000d8": "Trusted zone changed",
    "000000da": "Scan task settings changed",
    "000000db": "Application restarted",
    "000000e1": "Key added",
    "0000012f": "Network settings changed",
    "00000353": "Encryption status changed",
    "000003f7": "Password protection settings changed",
    "00010009": "Local task created",
    "00020006": "Backup storage cleaned up",
    "00030015": "Rule updated",
}

# Localized threat types of the Russian, Spanish and German bodies, by p8 code.
_TYPE_RU = {
    "60": "Вирус",
    "61": "Троянская программа",
    "62": "Вредоносная программа",
    "63": "Вредоносная программа",
    "64": "Сетевой червь",
}
_TYPE_ES = {
    "60": "Virus",
    "61": "Troyano",
    "62": "Malware",
    "63": "Malware",
    "64": "Gusano de red",
}
_TYPE_DE = {
    "60": "Virus",
    "61": "Trojaner",
    "62": "Malware",
    "63": "Malware",
    "64": "Netzwerkwurm",
}
_RU_ADWARE_TYPE = (
    "Содержит рекламное приложение, приложение автодозвона или легальное "
    "приложение, которое может быть использовано злоумышленниками для нанесения "
    "вреда компьютеру или данным пользователя"
)
_RU_REASON = ("Экспертный анализ", "Автоматический анализ")


# Organisations, FluentD hosts and devices.


@dataclass(frozen=True)
class Source:
    """One FluentD host: its UTC offset and how it names and packs objects."""

    name: str
    offset_minutes: int
    hourly: bool
    compression: str
    tag_prefix: str = "kav_logs"


@dataclass
class Host:
    """A managed device as KSC reports it."""

    name: str
    display_name: str
    ip: str
    group: str
    version: str
    user: str
    server: bool


@dataclass
class Org:
    """One KSC installation: language, devices and the FluentD host behind it."""

    key: str
    language: str
    date_style: str
    domain: str
    source: Source
    ksc_name: str
    ksc_ip: str
    kscfqdn: bool
    sd_dropped: bool
    p9_style: str
    groups: tuple[str, ...]
    versions: tuple[str, ...]
    host_count: int
    hosts: list[Host] = field(default_factory=list)
    servers: list[Host] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)
    task_ids: dict[str, int] = field(default_factory=dict)
    license_key: str = ""


_SOURCES = {
    "s3-eu": Source("fluentd-s3-eu", 0, False, "gzip"),
    "file-br": Source("fluentd-file-br", -180, True, "zstd"),
    "gcs-in": Source("fluentd-gcs-in", 330, False, "gzip"),
    "s3-br": Source("fluentd-s3-br", -180, False, "gzip"),
    "azure-de": Source("fluentd-azure-de", 0, False, "none"),
    "s3-ru": Source("fluentd-s3-ru", 0, False, "zstd"),
}


def _build_orgs(rng: random.Random, compression: str) -> list[Org]:
    def source(key: str) -> Source:
        base = _SOURCES[key]
        if compression == "mixed":
            return base
        return Source(base.name, base.offset_minutes, base.hourly, compression)

    orgs = [
        Org(
            key="corp",
            language="en",
            date_style="en-US",
            domain="EXAMPLE",
            source=source("s3-eu"),
            ksc_name="ksc01.corp.example.local",
            ksc_ip="10.10.0.5",
            kscfqdn=True,
            sd_dropped=False,
            p9_style="edr",
            groups=(
                "Managed devices",
                "Workstations",
                "Servers",
                "Finance",
                "Laptops - Remote",
            ),
            versions=("11.11.0.452", "12.3.0.493", "12.5.0.538", "11.0.0.0"),
            host_count=300,
        ),
        Org(
            key="lab",
            language="en",
            date_style="en-GB",
            domain="LAB",
            source=source("file-br"),
            ksc_name="ksc-lab",
            ksc_ip="10.20.0.5",
            kscfqdn=False,
            sd_dropped=False,
            p9_style="plain",
            groups=("Managed devices", "Lab", "Build agents"),
            versions=("11.0.0.0", "11.8.0.384"),
            host_count=110,
        ),
        Org(
            key="relay",
            language="en",
            date_style="en-US",
            domain="BRANCH",
            source=source("gcs-in"),
            ksc_name="ksc-branch.example.local",
            ksc_ip="10.30.0.5",
            kscfqdn=True,
            sd_dropped=True,
            p9_style="plain",
            groups=("Managed devices",),
            versions=("12.3.0.493",),
            host_count=70,
        ),
        Org(
            key="es",
            language="es",
            date_style="es",
            domain="EMPRESA",
            source=source("s3-br"),
            ksc_name="ksc.empresa.example",
            ksc_ip="10.40.0.5",
            kscfqdn=True,
            sd_dropped=False,
            p9_style="plain",
            groups=("Dispositivos administrados", "Ventas", "Contabilidad"),
            versions=("11.11.0.452", "12.3.0.493"),
            host_count=70,
        ),
        Org(
            key="de",
            language="de",
            date_style="de",
            domain="FIRMA",
            source=source("azure-de"),
            ksc_name="ksc.firma.example",
            ksc_ip="10.50.0.5",
            kscfqdn=True,
            sd_dropped=False,
            p9_style="plain",
            groups=("Verwaltete Geräte", "Vertrieb", "Entwicklung"),
            versions=("12.3.0.493", "12.5.0.538"),
            host_count=60,
        ),
        Org(
            key="ru",
            language="ru",
            date_style="ru",
            domain="OFFICE",
            source=source("s3-ru"),
            ksc_name="KES.EXAMPLE",
            ksc_ip="10.60.0.5",
            kscfqdn=True,
            sd_dropped=False,
            p9_style="plain",
            groups=("Управляемые устройства", "Бухгалтерия", "Склад"),
            versions=("11.0.0.0", "12.3.0.493"),
            host_count=70,
        ),
    ]
    for number, org in enumerate(orgs, start=1):
        _populate_org(rng, org, number)
    return orgs


def _populate_org(rng: random.Random, org: Org, number: int) -> None:
    firsts, lasts = _FIRST_NAMES[org.language], _LAST_NAMES[org.language]
    users = []
    while len(users) < org.host_count:
        first, last = rng.choice(firsts), rng.choice(lasts)
        style = rng.randrange(3)
        if style == 0:
            name = f"{first[0]}{last}"
        elif style == 1:
            name = f"{first}.{last}"
        else:
            name = f"{last}.{first[0]}"
        if name not in users:
            users.append(name)
    org.admins = [f"{org.domain}\\{name}" for name in ("ksc.admin", "secops")]
    for index in range(org.host_count):
        server = index < max(3, org.host_count // 15)
        short = f"SRV-{index + 1:03d}" if server else _workstation_name(rng, org, index)
        fqdn = rng.random() < 0.5
        name = f"{short.lower()}.{org.key}.example.local" if fqdn else short
        display = short.upper()
        if not server and rng.random() < 0.1:
            display = f"{display} - {users[index].upper()}"
        host = Host(
            name=name,
            display_name=display,
            ip=f"10.{number * 10}.{rng.randrange(1, 250)}.{rng.randrange(2, 254)}",
            group=rng.choice(org.groups),
            version=rng.choice(org.versions),
            user=f"{org.domain}\\{users[index]}",
            server=server,
        )
        org.hosts.append(host)
        if server:
            org.servers.append(host)
    org.task_ids = {name: rng.randrange(100, 2000) for name, _ in _TASKS}
    org.license_key = f"{rng.getrandbits(32):08X}"


def _workstation_name(rng: random.Random, org: Org, index: int) -> str:
    style = rng.randrange(3)
    if style == 0:
        return f"WS-{index + 1:04d}"
    if style == 1:
        return f"{org.key.upper()}-PC{index + 1:03d}"
    return "LAPTOP-" + "".join(
        rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(7)
    )


# Small random helpers used by the event builders.


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}X}"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _hashes(rng: random.Random, threat: str) -> tuple[str, str]:
    if threat == "EICAR-Test-File":
        return EICAR_SHA256, EICAR_MD5
    return _hex(rng, 64), _hex(rng, 32)


def _fill(rng: random.Random, template: str, user: str) -> str:
    return template.format(
        u=user.rsplit("\\", 1)[-1],
        n=rng.randrange(1, 9999),
        h4=_hex(rng, 4).lower(),
        h8=_hex(rng, 8).lower(),
        H8=_hex(rng, 8),
        a=rng.choice(("eicar", "invoice", "photos", "docs")),
    )


def _file_path(rng: random.Random, host: Host) -> tuple[str, str]:
    """Return a Windows path of a detected file and the file's name."""
    name = _fill(rng, rng.choice(_FILE_NAMES), host.user)
    roll = rng.random()
    if roll < 0.12:
        # Browser cache copies carry "[1]" before the extension, so the path
        # contains a "]" that RFC 5424 escapes inside SD-PARAM values.
        stem, dot, ext = name.rpartition(".")
        name = f"{stem}[1].{ext}" if dot else f"{name}[1]"
        return f"{_fill(rng, _INETCACHE, host.user)}\\{name}", name
    folder = _fill(rng, rng.choice(_FOLDERS), host.user)
    if roll < 0.2:
        archive = f"{folder}\\{rng.choice(('archive', 'backup', 'mail'))}.zip"
        return f"{archive}//{name}", name
    return f"{folder}\\{name}", name


def _url(rng: random.Random) -> str:
    domain = (
        rng.choice(_DOMAIN_PREFIXES)
        + "."
        + rng.choice(_DOMAIN_WORDS)
        + rng.choice(_TLDS)
    )
    path = rng.choice(_URL_PATHS).format(
        n=rng.randrange(1, 9999), h8=_hex(rng, 8).lower()
    )
    return f"https://{domain}{path}"


def _format_date(epoch: int, style: str) -> str:
    """Format a device-local time the way the KSC console language shows it."""
    t = time.gmtime(epoch)
    hour12 = t.tm_hour % 12 or 12
    if style == "en-US":
        ampm = "AM" if t.tm_hour < 12 else "PM"
        return f"{t.tm_mon}/{t.tm_mday}/{t.tm_year} {hour12}:{t.tm_min:02d}:00 {ampm}"
    if style == "es":
        ampm = "a. m." if t.tm_hour < 12 else "p. m."
        return (
            f"{t.tm_mday:02d}/{t.tm_mon:02d}/{t.tm_year} "
            f"{hour12}:{t.tm_min:02d}:00 {ampm}"
        )
    if style == "en-GB":
        return (
            f"{t.tm_mday:02d}/{t.tm_mon:02d}/{t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        )
    return (
        f"{t.tm_mday:02d}.{t.tm_mon:02d}.{t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def _release_date(rng: random.Random, org: Org, epoch: int) -> str:
    released = epoch + org.source.offset_minutes * 60 - rng.randrange(1800, 43200)
    return _format_date(released - released % 60, org.date_style)


def _user(rng: random.Random, org: Org, host: Host, system_share: float) -> str:
    roles = _ROLES[org.language]
    if rng.random() < system_share:
        return f"{_SYSTEM_USER[org.language]} ({roles['system']})"
    role = roles["active"] if rng.random() < 0.6 else roles["initiator"]
    return f"{host.user} ({role})"


def _p9(rng: random.Random, org: Org, md5: str, method: int) -> str:
    if org.p9_style == "edr":
        return (
            f'{{"engine":1,"method":{method},"edr_ver":1,"edr": '
            f'{{"id":"{_uuid(rng)}"}},"md5":"{md5}"}}'
        )
    return (
        f'{{"engine":{rng.choice((1, 3))},"method":{method},"blacklist":false,'
        f'"cloud_sb":false,"md5":"{md5}"}}'
    )


def _sd_tail(
    org: Org, host: Host, et: str, tdn: str, etdn: str
) -> list[tuple[str, str]]:
    params = [
        ("et", et),
        ("tdn", tdn),
        ("etdn", etdn),
        ("hdn", host.display_name),
        ("hip", host.ip),
        ("gn", host.group),
    ]
    if org.kscfqdn:
        params.append(("kscfqdn", org.ksc_name))
    return params


def _server_tail(org: Org, et: str, tdn: str, etdn: str) -> list[tuple[str, str]]:
    params = [
        ("et", et),
        ("tdn", tdn),
        ("etdn", etdn),
        ("hdn", org.ksc_name.split(".")[0].upper()),
        ("hip", org.ksc_ip),
    ]
    if org.kscfqdn:
        params.append(("kscfqdn", org.ksc_name))
    return params


# Event builders: each returns one Kaspersky event of its kind.


class Event(NamedTuple):
    """One Kaspersky export as FluentD stores its record."""

    host: str
    ident: str
    msgid: str
    extradata: str
    message: str
    severity: str
    event_type: str


def _kes(host: Host) -> str:
    return f"KES|{host.version}"


def _event(
    host: str,
    ident: str,
    et: str,
    params: list[tuple[str, str]],
    message: str,
    severity: str,
) -> Event:
    extradata = format_extradata(KASPERSKY_SD_ID, params)
    return Event(host, ident, et[:MSGID_MAX_LENGTH], extradata, message, severity, et)


def _detection(
    rng: random.Random,
    org: Org,
    host: Host,
    epoch: int,
    et: str,
    etdn: str,
    result: str,
    threats: Sequence[tuple[str, str, str]],
    severity: str,
) -> Event:
    threat, code, threat_type = rng.choice(threats)
    if threats is _MALWARE and rng.random() < 0.1:
        # Test files are a usual share of detections in real fleets.
        threat, code, threat_type = _MALWARE[0]
    path, _ = _file_path(rng, host)
    sha256, md5 = _hashes(rng, threat)
    user = _user(rng, org, host, 0.15)
    method = rng.choice((0, 1, 2, 3, 4))

    params = [
        ("p1", sha256),
        ("p2", path),
        ("p5", threat),
        ("p7", user.rsplit(" (", 1)[0]),
        ("p8", code),
        ("p9", _p9(rng, org, md5, method)),
    ]
    tdn = rng.choice(
        ("File Threat Protection",) * 4 + ("Behavior Detection", "Malware Scan")
    )
    params += _sd_tail(org, host, et, tdn, etdn)
    if org.p9_style == "edr":
        params += [("engine", "1"), ("method", str(method))]

    items = [
        ("Result description", result),
        ("Type", threat_type),
        ("Name", threat),
        ("User", user),
        ("Object", path),
    ]
    if result == "Detected":
        reason = rng.choice(
            ("Expert analysis", "Automatic analysis", "Machine learning")
        )
        items += [
            ("Reason", reason),
            ("Database release date", _release_date(rng, org, epoch)),
        ]
    items += [("SHA256", sha256), ("MD5", md5)]
    message = format_message(items, bom=rng.random() < 0.3)
    return _event(host.name, _kes(host), et, params, message, severity)


def _virus_found(rng, org, host, epoch):
    return _detection(
        rng,
        org,
        host,
        epoch,
        "GNRL_EV_VIRUS_FOUND",
        "Malicious object detected",
        "Detected",
        _MALWARE,
        "crit",
    )


def _object_deleted(rng, org, host, epoch):
    return _detection(
        rng,
        org,
        host,
        epoch,
        "GNRL_EV_OBJECT_DELETED",
        "Object deleted",
        "Deleted",
        _MALWARE,
        "warn",
    )


def _object_quarantined(rng, org, host, epoch):
    return _detection(
        rng,
        org,
        host,
        epoch,
        "GNRL_EV_OBJECT_QUARANTINED",
        "Object quarantined",
        "Quarantined",
        _MALWARE,
        "warn",
    )


def _object_disinfected(rng, org, host, epoch):
    return _detection(
        rng,
        org,
        host,
        epoch,
        "GNRL_EV_OBJECT_CURED",
        "Object disinfected",
        "Disinfected",
        _INFECTORS,
        "warn",
    )


def _suspicious_found(rng, org, host, epoch):
    threats = [(name, code, _RISKWARE_TYPE) for name, code in _RISKWARE]
    return _detection(
        rng,
        org,
        host,
        epoch,
        "GNRL_EV_SUSPICIOUS_OBJECT_FOUND",
        "Legitimate software that can be used by criminals detected",
        "Detected",
        threats,
        "warn",
    )


def _wsee_event(rng, org, host, epoch, et, etdn, first_item, empty_item):
    threat, code, threat_type = rng.choice(_MALWARE)
    path, _ = _file_path(rng, host)
    sha256, md5 = _hashes(rng, threat)
    process = rng.choice(
        (
            "C:\\Windows\\explorer.exe",
            "C:\\Windows\\System32\\svchost.exe",
            "System",
            "C:\\Program Files\\7-Zip\\7z.exe",
        )
    )
    params = [("p1", sha256), ("p2", path), ("p3", "1"), ("p5", threat), ("p6", "0")]
    params += _sd_tail(org, host, et, "Real-Time File Protection", etdn)
    items = [
        ("", first_item.format(type=threat_type, name=threat)),
        ("Object name", path),
        ("Process name", process),
        ("PID", str(rng.randrange(4, 20000, 4))),
        ("User", host.user if rng.random() < 0.7 else "NT AUTHORITY\\SYSTEM"),
    ]
    if empty_item:
        items.append(("", ""))
    items += [("MD5 file hash", md5), ("File SHA256 hash", sha256)]
    version = "10.1.0.0" if host.version.startswith("11.0") else "11.0.1.897"
    message = format_message(items)
    return _event(host.name, f"WSEE|{version}", et, params, message, "crit")


def _wsee_virus_found(rng, org, host, epoch):
    return _wsee_event(
        rng,
        org,
        host,
        epoch,
        "GNRL_EV_VIRUS_FOUND",
        "Infected or other object detected",
        "Object detected: {type} {name}",
        False,
    )


def _wsee_not_disinfected(rng, org, host, epoch):
    return _wsee_event(
        rng,
        org,
        host,
        epoch,
        "GNRL_EV_OBJECT_NOTCURED",
        "Object not disinfected",
        "Object not disinfected. Reason: object cannot be disinfected",
        True,
    )


def _attack_detected(rng, org, host, epoch):
    attack, protocol, port = rng.choice(_ATTACKS)
    if port is None:
        port = rng.choice((21, 22, 23, 25, 135, 139, 445, 1433, 3306, 5900, 8443))
    if rng.random() < 0.6:
        network = rng.choice(("203.0.113", "198.51.100", "192.0.2"))
        attacker = f"{network}.{rng.randrange(1, 255)}"
    else:
        attacker = (
            f"10.{rng.randrange(1, 70)}.{rng.randrange(0, 256)}.{rng.randrange(2, 254)}"
        )
    et, etdn = "GNRL_EV_ATTACK_DETECTED", "Network attack detected"
    params = [
        ("p1", attack),
        ("p2", protocol),
        ("p3", str(ipv4_to_uint(attacker))),
        ("p4", str(port)),
        ("p6", str(ipv4_to_uint(host.ip))),
    ]
    params += _sd_tail(org, host, et, "Network Threat Protection", etdn)
    packet = f"{protocol} from {attacker} at {host.ip}:{port}"
    items = [
        ("User", f"{_SYSTEM_USER['en']} ({_ROLES['en']['system']})"),
        ("Component", "Network Threat Protection"),
        ("Result description", "Blocked"),
        ("Name", attack),
        ("Object", packet),
        ("Object type", "Network packet"),
        ("Object name", packet),
        ("Additional", host.ip),
        ("Database release date", _release_date(rng, org, epoch)),
    ]
    if rng.random() < 0.5:
        items.insert(0, ("Event type", etdn))
    return _event(host.name, _kes(host), et, params, format_message(items), "crit")


def _application_items(rng, app) -> list[tuple[str, str]]:
    name, exe, folder = app
    return [
        ("Application", name),
        ("Application\\Name", exe),
        ("Application\\Path", folder),
        ("Application\\Process ID", str(rng.randrange(400, 30000, 4))),
    ]


def _web_url_blocked(rng, org, host, epoch):
    url = _url(rng)
    if rng.random() < 0.3:
        et, etdn = "GNRL_EV_WEB_URL_BLOCKED_BY_KSN", "Access denied (KSN)"
    else:
        et, etdn = "GNRL_EV_WEB_URL_BLOCKED", "Access denied (local databases)"
    category = rng.choice(_WEB_CATEGORIES)
    params = _sd_tail(org, host, et, "Web Control", etdn)
    items = [("Event type", etdn)]
    items += _application_items(rng, rng.choice(_BROWSERS))
    items += [
        ("User", _user(rng, org, host, 0.0)),
        ("Component", "Web Control"),
        ("Result\\Description", "Blocked"),
        ("Object", url),
        ("Object\\Type", "Web page"),
        ("Object\\Path", url),
        ("Object\\Name", url.rsplit("/", 1)[-1] or url),
        ("Rule", f"Block {category.split(',')[0].lower()}"),
        ("Category", category),
    ]
    message = format_message(items, trailing=True)
    return _event(host.name, _kes(host), et, params, message, "crit")


def _dangerous_link_blocked(rng, org, host, epoch):
    url = _url(rng)
    et, etdn = "GNRL_EV_VIRUS_FOUND_AND_BLOCKED", "Dangerous link blocked"
    params = [("p2", url)] + _sd_tail(org, host, et, "Web Threat Protection", etdn)
    threat_type, name = rng.choice(
        (
            ("Threat of data loss", url),
            ("Malicious link", url),
            ("Phishing", url),
            ("Trojan program", "HEUR:Trojan.Script.Generic"),
        )
    )
    items = [("Event type", etdn)]
    items += _application_items(rng, rng.choice(_BROWSERS + _APPLICATIONS[3:4]))
    items += [
        ("User", _user(rng, org, host, 0.0)),
        ("Component", "Web Threat Protection"),
        ("Result\\Description", "Blocked"),
        ("Result\\Type", threat_type),
        ("Result\\Name", name),
        ("Result\\Threat level", rng.choice(("High", "High", "Medium"))),
        ("Result\\Precision", rng.choice(("Exactly", "Heuristic analysis"))),
        ("Object", url),
        ("Object\\Type", "Web page"),
        ("Object\\Path", url),
        ("Object\\Name", url.rsplit("/", 1)[-1] or url),
        ("Reason", rng.choice(("Automatic analysis", "Expert analysis"))),
        ("Database release date", _release_date(rng, org, epoch)),
    ]
    message = format_message(items, trailing=True)
    return _event(host.name, _kes(host), et, params, message, "warn")


def _device_denied(rng, org, host, epoch):
    category, bus, device, device_id, vid_pid = rng.choice(_DEVICES)
    device_id = device_id.format(serial=_hex(rng, 20))
    et, etdn = "GNRL_EV_DEVCTRL_DEV_PLUG_DENIED", "Operation with device prohibited"
    params = _sd_tail(org, host, et, "Device Control", etdn)
    items = [
        ("Event type", etdn),
        ("User", _user(rng, org, host, 0.0)),
        ("Component", "Device Control"),
        ("Result description", "Blocked"),
        ("Device category", category),
        ("Device type/Bus type", bus),
        ("Device name", device),
        ("Device ID", device_id),
        ("Device VID/PID", vid_pid),
        ("Operation", rng.choice(("Read", "Write", "Connect"))),
    ]
    return _event(host.name, _kes(host), et, params, format_message(items), "crit")


_LAUNCH_DENIED_FILES = (
    "rm.bat psexec.exe mimikatz.exe AnyDesk.exe tor.exe nc.exe".split()
)
_LAUNCH_DENIED_FOLDERS = _FOLDERS[:4] + (
    "C:\\Windows\\SysWOW64\\config\\systemprofile\\Citrix\\UpdaterBinaries",
)


def _app_launch_denied(rng, org, host, epoch):
    name = rng.choice(_LAUNCH_DENIED_FILES)
    folder = _fill(rng, rng.choice(_LAUNCH_DENIED_FOLDERS), host.user)
    path = f"{folder}\\{name}"
    sha256 = _hex(rng, 64)
    system = rng.random() < 0.3
    user = f"{_SYSTEM_USER['en']} (Initiator)" if system else _user(rng, org, host, 0.0)
    parent = "" if system else "C:\\Windows\\explorer.exe"
    p5 = (
        '{"CertSerial":"" ,"CertThumbprint":"" ,"CertIssuer":"" ,"CertSubject":"" ,'
        f'"ParentProcess":"{parent}"}}'
    )

    et, etdn = "GNRL_EV_APPLICATION_LAUNCH_DENIED", "Application startup prohibited"
    params = [
        ("p1", _hex(rng, 16).lower()),
        ("p2", user.rsplit(" (", 1)[0]),
        ("p3", "0" * 32),
        ("p4", "EAC001" + "0" * 26),
        ("p5", p5),
        ("p6", name),
        ("p7", path),
        ("p8", f";{sha256}"),
    ]
    params += _sd_tail(org, host, et, "Application Control", etdn)

    items = [("Event type", etdn)]
    if system:
        items.append(
            (
                "Comment",
                "At the next operating system restart, the prohibited process "
                "will be automatically blocked until Kaspersky Endpoint Security for "
                "Windows starts",
            )
        )
    items += [
        ("Object name", name),
        ("Path to object", path),
        ("SHA256", sha256.lower()),
        ("KL category", rng.choice(("Uncategorized", "Remote administration", "P2P"))),
        ("KL category source", rng.choice(("Local databases", "KSN"))),
        ("User", user),
        ("Result", "Blocked"),
        ("Rule category", rng.choice(("Default Deny", "Prohibited applications"))),
        ("Rule type", rng.choice(("Not test", "Test"))),
    ]
    return _event(host.name, _kes(host), et, params, format_message(items), "warn")


def _task_state(rng, org, host, epoch):
    task, kind = rng.choice(_TASKS)
    etdn, state, old_state = rng.choice(_TASK_STATES)
    et = "KLPRCI_TaskState"
    params = _sd_tail(org, host, et, task, etdn)
    items = [
        ("Event type", etdn),
        ("Task", task),
        ("Task ID", str(org.task_ids[task])),
        ("Old state", old_state),
        ("New state", state),
    ]
    if state == "Failed":
        items.append(("Error", rng.choice(_TASK_ERRORS)))
    elif state == "Completed" and kind == "scan":
        items.append(("Objects scanned", str(rng.randrange(1000, 900000))))
    elif state == "Completed" and kind == "update":
        items.append(("Database release date", _release_date(rng, org, epoch)))
    elif state == "Running":
        items.append(("Progress", f"{rng.randrange(0, 100)}%"))
    severity = "err" if state == "Failed" else "info"
    return _event(host.name, _kes(host), et, params, format_message(items), severity)


def _task_stopped_event(rng, org, host, ident):
    component = rng.choice(_PROTECTION_COMPONENTS)
    et, etdn = "000000de", "Task stopped"
    params = _sd_tail(org, host, et, component, etdn)
    items = [
        ("Event type", etdn),
        ("Application", "Kaspersky Endpoint Security for Windows"),
        ("Application\\Name", "avp.exe"),
        (
            "Application\\Path",
            "C:\\Program Files (x86)\\Kaspersky Lab\\Kaspersky Endpoint Security for "
            "Windows\\",
        ),
        ("User", f"{_SYSTEM_USER['en']} (Initiator)"),
        ("Component", component),
        ("Result\\Description", etdn),
        ("Object", component),
        ("Object\\Type", "Subsystem"),
        ("Object\\Name", component),
    ]
    message = format_message(items, separator=":     ", trailing=True)
    return _event(host.name, ident, et, params, message, "warn")


def _task_stopped(rng, org, host, epoch):
    return _task_stopped_event(rng, org, host, _kes(host))


def _kes_empty_version(rng, org, host, epoch):
    return _task_stopped_event(rng, org, host, "KES|")


def _bases_updated(rng, org, host, epoch):
    et, etdn = "KLSRV_UPD_BASES_UPDATED", "Databases updated"
    task = "Download updates to the repository of the Administration Server"
    params = _server_tail(org, et, task, etdn)
    items = [
        ("Event type", etdn),
        ("Task", task),
        ("Database release date", _release_date(rng, org, epoch)),
        ("Downloaded", f"{rng.randrange(1, 400)} MB"),
    ]
    return _event(org.ksc_name, KSC_IDENT, et, params, format_message(items), "info")


def _license_usage(rng, org, host, epoch):
    et, etdn = "KLSRV_EV_LICENSE_CHECK_90", "License usage exceeds 90%"
    limit = 500 if org.key == "corp" else 150
    used = rng.randrange(int(limit * 0.9), limit + 1)
    params = _server_tail(org, et, "Administration Server", etdn)
    items = [
        ("Event type", etdn),
        ("License key", org.license_key),
        ("Application", "Kaspersky Endpoint Security for Windows"),
        ("Devices", str(used)),
        ("License limit", str(limit)),
        (
            "Checked",
            _format_date(epoch + org.source.offset_minutes * 60, org.date_style),
        ),
    ]
    return _event(org.ksc_name, KSC_IDENT, et, params, format_message(items), "info")


def _license_expiration(rng, org, host, epoch):
    et, etdn = "GNRL_EV_LICENSE_EXPIRATION", "License expires soon"
    days = rng.randrange(1, 31)
    expires = epoch + days * 86400
    params = _sd_tail(org, host, et, "Kaspersky Endpoint Security for Windows", etdn)
    items = [
        ("Event type", etdn),
        ("License key", org.license_key),
        ("Expiration date", _format_date(expires - expires % 86400, org.date_style)),
        ("Days remaining", str(days)),
    ]
    return _event(host.name, _kes(host), et, params, format_message(items), "warn")


def _audit_server_connect(rng, org, host, epoch):
    et, etdn = (
        "KLAUD_EV_SERVERCONNECT",
        "Audit: Connection to the Administration Server",
    )
    address = (
        f"10.{rng.randrange(1, 70)}.{rng.randrange(0, 256)}.{rng.randrange(2, 254)}"
    )
    params = _server_tail(org, et, "Administration Server", etdn)
    items = [
        ("Event type", etdn),
        ("User", rng.choice(org.admins)),
        ("Address", address),
        ("Console", rng.choice(("Administration Console", "Web Console"))),
        ("Result", rng.choice(("Success", "Success", "Success", "Access denied"))),
    ]
    return _event(org.ksc_name, KSC_IDENT, et, params, format_message(items), "info")


def _unknown_hex_threat(rng, org, host, epoch):
    et = rng.choice(_UNNAMED_HEX_THREAT)
    threat, code, threat_type = rng.choice(_MALWARE[1:])
    path, _ = _file_path(rng, host)
    component = rng.choice(
        ("Behavior Detection", "Exploit Prevention", "AMSI Protection")
    )
    etdn = "Dangerous activity detected"
    params = [("p2", path), ("p5", threat), ("p8", code)]
    params += _sd_tail(org, host, et, component, etdn)
    items = [
        ("Event type", etdn),
        ("User", _user(rng, org, host, 0.1)),
        ("Component", component),
        ("Result description", rng.choice(("Detected", "Blocked"))),
        ("Type", threat_type),
        ("Name", threat),
        ("Object", path),
    ]
    return _event(host.name, _kes(host), et, params, format_message(items), "crit")


def _unknown_hex_info(rng, org, host, epoch):
    et = rng.choice(tuple(_UNNAMED_HEX_INFO))
    etdn = _UNNAMED_HEX_INFO[et]
    component = rng.choice(_PROTECTION_COMPONENTS + ("Kaspersky Endpoint Security",))
    params = _sd_tail(org, host, et, component, etdn)
    items = [
        ("Event type", etdn),
        ("Application", "Kaspersky Endpoint Security for Windows"),
        ("User", _user(rng, org, host, 0.5)),
        ("Component", component),
    ]
    return _event(host.name, _kes(host), et, params, format_message(items), "info")


def _ru_object_blocked(rng, org, host, epoch):
    name, code = rng.choice(_RISKWARE)
    url = _url(rng)
    sha256, md5 = _hex(rng, 64), _hex(rng, 32)
    user = _user(rng, org, host, 0.0)
    et, etdn = "GNRL_EV_OBJECT_BLOCKED", "Загрузка объекта запрещена"
    params = [
        ("p1", sha256),
        ("p2", url),
        ("p5", name),
        ("p7", user.rsplit(" (", 1)[0]),
        ("p8", code),
        ("p9", _p9(rng, org, md5, 0)),
    ]
    params += _sd_tail(org, host, et, "Защита от веб-угроз", etdn)
    items = [
        ("Описание результата", "Запрещено"),
        ("Тип", _RU_ADWARE_TYPE),
        ("Название", name),
        ("Пользователь", user),
        ("Объект", url),
        ("Дата выпуска баз", _release_date(rng, org, epoch)),
        ("SHA256", sha256),
        ("MD5", md5),
    ]
    message = format_message(items, bom=rng.random() < 0.5)
    return _event(host.name, _kes(host), et, params, message, "warn")


def _ru_virus_found(rng, org, host, epoch):
    threat, code, _ = rng.choice(_MALWARE)
    path, _ = _file_path(rng, host)
    sha256, md5 = _hashes(rng, threat)
    user = _user(rng, org, host, 0.1)
    et, etdn = "GNRL_EV_VIRUS_FOUND", "Обнаружен вредоносный объект (локальные базы)"
    params = [
        ("p1", sha256),
        ("p2", path),
        ("p5", threat),
        ("p7", user.rsplit(" (", 1)[0]),
        ("p8", code),
        ("p9", _p9(rng, org, md5, 3)),
    ]
    params += _sd_tail(org, host, et, "Защита от файловых угроз", etdn)
    items = [
        ("Описание результата", "Обнаружено"),
        ("Тип", _TYPE_RU[code]),
        ("Название", threat),
        ("Пользователь", user),
        ("Объект", path),
        ("Причина", rng.choice(_RU_REASON)),
        ("Дата выпуска баз", _release_date(rng, org, epoch)),
        ("SHA256", sha256),
        ("MD5", md5),
    ]
    message = format_message(items, bom=rng.random() < 0.5)
    return _event(host.name, _kes(host), et, params, message, "crit")


def _localized_virus_found(rng, org, host, epoch, words):
    threat, code, _ = rng.choice(_MALWARE)
    path, name = _file_path(rng, host)
    sha256, md5 = _hashes(rng, threat)
    app = rng.choice(_APPLICATIONS)
    user = _user(rng, org, host, 0.1)
    et = "GNRL_EV_VIRUS_FOUND"
    params = [
        ("p1", sha256),
        ("p2", path),
        ("p5", threat),
        ("p7", user.rsplit(" (", 1)[0]),
        ("p8", code),
    ]
    params += _sd_tail(org, host, et, words["component"], words["etdn"])

    # The values in the order of the localized keys in words["keys"].
    values = (
        words["etdn"],
        app[0],
        app[1],
        app[2],
        str(rng.randrange(400, 30000, 4)),
        user,
        words["component"],
        words["detected"],
        words["types"][code],
        threat,
        words["high"],
        path,
        words["file"],
        name,
        words["reason"],
        _release_date(rng, org, epoch),
    )
    items = list(zip(words["keys"], values, strict=True))
    message = format_message(items, trailing=True)
    return _event(host.name, _kes(host), et, params, message, "crit")


_SPANISH = {
    "etdn": "Se detectó un objeto malicioso",
    "component": "Protección contra amenazas de archivos",
    "detected": "Detectado",
    "high": "Alto",
    "file": "Archivo",
    "reason": "Análisis experto",
    "types": _TYPE_ES,
    "keys": (
        "Tipo de evento",
        "Aplicación",
        "Aplicación\\Nombre",
        "Aplicación\\Ruta",
        "Aplicación\\Id. del proceso",
        "Usuario",
        "Componente",
        "Resultado\\Descripción",
        "Resultado\\Tipo",
        "Resultado\\Nombre",
        "Resultado\\Nivel de amenaza",
        "Objeto",
        "Objeto\\Tipo",
        "Objeto\\Nombre",
        "Motivo",
        "Fecha de lanzamiento de la base de datos",
    ),
}
_GERMAN = {
    "etdn": "Schädliches Objekt erkannt",
    "component": "Schutz vor bedrohlichen Dateien",
    "detected": "Erkannt",
    "high": "Hoch",
    "file": "Datei",
    "reason": "Expertenanalyse",
    "types": _TYPE_DE,
    "keys": (
        "Ereignistyp",
        "Anwendung",
        "Anwendung\\Name",
        "Anwendung\\Pfad",
        "Anwendung\\Prozess-ID",
        "Benutzer",
        "Komponente",
        "Ergebnis\\Beschreibung",
        "Ergebnis\\Typ",
        "Ergebnis\\Name",
        "Ergebnis\\Bedrohungsstufe",
        "Objekt",
        "Objekt\\Typ",
        "Objekt\\Name",
        "Grund",
        "Datum der Datenbankveröffentlichung",
    ),
}


def _es_virus_found(rng, org, host, epoch):
    return _localized_virus_found(rng, org, host, epoch, _SPANISH)


def _de_virus_found(rng, org, host, epoch):
    return _localized_virus_found(rng, org, host, epoch, _GERMAN)


def _body_only(host: Host, items: list[tuple[str, str]]) -> Event:
    # A relay in front of FluentD dropped the structured data and the MSGID.
    return Event(host.name, _kes(host), "-", "-", format_message(items), "warn", "")


def _body_only_detected(rng, org, host, epoch):
    threat, _, threat_type = rng.choice(_MALWARE)
    path, _ = _file_path(rng, host)
    sha256, md5 = _hashes(rng, threat)
    return _body_only(
        host,
        [
            ("Result description", rng.choice(("Detected", "Deleted", "Detected"))),
            ("Type", threat_type),
            ("Name", threat),
            ("User", _user(rng, org, host, 0.1)),
            ("Object", path),
            ("Reason", rng.choice(("Expert analysis", "Automatic analysis"))),
            ("Database release date", _release_date(rng, org, epoch)),
            ("SHA256", sha256),
            ("MD5", md5),
        ],
    )


def _body_only_update_error(rng, org, host, epoch):
    return _body_only(
        host,
        [
            ("Event type", "Error verifying application databases and modules"),
            ("Result description", "Error"),
            (
                "Error",
                rng.choice(
                    ("Update files are corrupted", "Update source is unavailable")
                ),
            ),
            ("Object type", "Web page"),
            (
                "Object name",
                f"updates/kdb/i386/kdb-i386-{rng.randrange(1000, 9999)}"
                f"{rng.choice('abcdefgh')}.xml",
            ),
            ("User", _user(rng, org, host, 0.0)),
            ("Release date", _release_date(rng, org, epoch)),
        ],
    )


def _body_only_processing_error(rng, org, host, epoch):
    app = rng.choice(_APPLICATIONS[3:])
    user_name = host.user.rsplit("\\", 1)[-1]
    return _body_only(
        host,
        [
            ("Event type", "Processing error"),
            ("Name", app[1]),
            ("Application path", app[2].rstrip("\\")),
            ("Process ID", str(rng.randrange(400, 30000, 4))),
            ("User", _user(rng, org, host, 0.0)),
            ("Component", "File Threat Protection"),
            ("Result description", "Processing error"),
            ("Object type", "File"),
            (
                "Path to object",
                f"\\\\fs01.example.local\\profiles$\\{user_name}\\Outlook",
            ),
            ("Object name", f"{user_name}@example.org.ost"),
            ("Reason", rng.choice(("Read error", "Skipped", "Size"))),
        ],
    )


Builder = Callable[[random.Random, Org, Host, int], Event]


class Kind(NamedTuple):
    """One kind of generated event: share, category and where it comes from."""

    name: str
    weight: float
    category: str
    scope: str
    builder: Builder


# NOTE: the bodies of task state, Web Control, Device Control, license, audit,
# KLSRV_* and unnamed hex-id events follow the key style of real KES bodies, but
# no public sample shows their exact items or SD-PARAMs.
# scope: "en" devices of English orgs with structured data, "wsee" their
# servers, "ksc" their Administration Servers, "relay" the org whose relay drops
# structured data, "ru"/"es"/"de" the localized orgs.
KINDS: tuple[Kind, ...] = (
    Kind("virus_found", 12, "security", "en", _virus_found),
    Kind("object_deleted", 7, "security", "en", _object_deleted),
    Kind("object_quarantined", 5, "security", "en", _object_quarantined),
    Kind("object_disinfected", 3, "security", "en", _object_disinfected),
    Kind("suspicious_found", 3, "security", "en", _suspicious_found),
    Kind("wsee_virus_found", 2, "security", "wsee", _wsee_virus_found),
    Kind("wsee_not_disinfected", 1.5, "security", "wsee", _wsee_not_disinfected),
    Kind("attack_detected", 6, "security", "en", _attack_detected),
    Kind("web_url_blocked", 6, "security", "en", _web_url_blocked),
    Kind("dangerous_link_blocked", 4, "security", "en", _dangerous_link_blocked),
    Kind("device_denied", 4, "security", "en", _device_denied),
    Kind("app_launch_denied", 4, "security", "en", _app_launch_denied),
    Kind("task_state", 14, "general", "en", _task_state),
    Kind("task_stopped", 2, "general", "en", _task_stopped),
    Kind("kes_empty_version", 1, "general", "en", _kes_empty_version),
    Kind("bases_updated", 3, "general", "ksc", _bases_updated),
    Kind("license_usage", 0.3, "general", "ksc", _license_usage),
    Kind("license_expiration", 1, "general", "en", _license_expiration),
    Kind("audit_server_connect", 1.5, "general", "ksc", _audit_server_connect),
    Kind("unknown_hex_threat", 1.5, "security", "en", _unknown_hex_threat),
    Kind("unknown_hex_info", 2.5, "unknown", "en", _unknown_hex_info),
    Kind("ru_object_blocked", 2, "security", "ru", _ru_object_blocked),
    Kind("ru_virus_found", 1.5, "security", "ru", _ru_virus_found),
    Kind("es_virus_found", 2.5, "security", "es", _es_virus_found),
    Kind("de_virus_found", 2.5, "security", "de", _de_virus_found),
    Kind("body_only_detected", 2, "security", "relay", _body_only_detected),
    Kind("body_only_update_error", 1, "general", "relay", _body_only_update_error),
    Kind(
        "body_only_processing_error", 1, "general", "relay", _body_only_processing_error
    ),
)


# Broken lines and other products' lines.


def _cut_json(rng: random.Random, line: str) -> str:
    start = line.index("\t{") + 2
    return line[: rng.randrange(start, len(line) - 2)]


def _broken_line(
    rng: random.Random, kind: str, orgs: list[Org], epoch: int
) -> tuple[Org, bytes]:
    if kind == "not_utf8":
        # A relay re-encoded the body in the Windows code page of its locale.
        key = rng.choice(("ru", "es"))
        org = next(o for o in orgs if o.key == key)
        builder = _ru_virus_found if org.key == "ru" else _es_virus_found
    else:
        org = orgs[rng.choice((0, 0, 1, 3, 4, 5))]
        builder = rng.choice(
            (_virus_found, _task_state, _attack_detected, _device_denied)
        )
        if org.language != "en":
            builder = {"ru": _ru_virus_found, "es": _es_virus_found}.get(
                org.language, _de_virus_found
            )
    host = rng.choice(org.hosts)
    event = builder(rng, org, host, epoch)
    time_text = format_fluentd_time(epoch, org.source.offset_minutes)
    tag = f"{org.source.tag_prefix}.user.{event.severity}"
    record = format_record(
        event.host, event.ident, event.msgid, event.extradata, event.message
    )

    if kind == "cut_json":
        text = _cut_json(rng, f"{time_text}\t{tag}\t{record}")
    elif kind == "invalid_time":
        bad_time = rng.choice(
            (
                "2024-02-30T10:15:00+00:00",
                "2024-13-01T00:00:00+00:00",
                "2024-03-12T25:61:00+00:00",
                "-",
                "Mon Mar 11 10:15:00 2024",
            )
        )
        text = f"{bad_time}\t{tag}\t{record}"
    elif kind == "json_array":
        values = [
            event.host,
            event.ident,
            "-",
            event.msgid,
            event.extradata,
            event.message,
        ]
        text = f"{time_text}\t{tag}\t{_JSON.encode(values)}"
    elif kind == "missing_fields":
        fields = json.loads(record)
        for name in ("ident", "extradata", "msgid"):
            fields.pop(name)
        if rng.random() < 0.5:
            fields.pop("message")
        text = f"{time_text}\t{tag}\t{_JSON.encode(fields)}"
    elif kind == "unmatched_syslog":
        # in_syslog with emit_unmatched_lines keeps a message its RFC 5424
        # regexp rejected; here the datagram was cut inside the SD element.
        header = (
            f"<10>1 {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(epoch))}.000Z "
            f"{event.host} {event.ident} - {event.msgid} "
        )
        raw = header + event.extradata[: rng.randrange(12, len(event.extradata) - 1)]
        text = f"{time_text}\t{org.source.tag_prefix}.unmatched\t" + _JSON.encode(
            {"unmatched_line": raw}
        )
    else:
        text = f"{time_text}\t{tag}\t{record.replace(BOM, '')}"
        codec = "cp1251" if org.key == "ru" else "cp1252"
        data = (text + "\n").encode(codec)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return org, data
        raise AssertionError(f"{codec} encoding left the line valid UTF-8: {text!r}")
    return org, (text + "\n").encode("utf-8")


BROKEN_KINDS = (
    "cut_json",
    "invalid_time",
    "json_array",
    "missing_fields",
    "unmatched_syslog",
    "not_utf8",
)
FOREIGN_KINDS = ("vmware_hostd", "vmware_vpxa", "linux_sshd")


def _foreign_line(rng: random.Random, kind: str, org: Org, epoch: int) -> bytes:
    time_text = format_fluentd_time(epoch, org.source.offset_minutes)
    prefix = org.source.tag_prefix
    esx = f"esx{rng.randrange(1, 13):02d}.{org.key}.example.local"
    # vSphere operation ids may contain "@23668", the number Kaspersky uses in
    # its SD-ID, so only the SD-ID name distinguishes the two products.
    op_number = 23668 if rng.random() < 0.5 else rng.randrange(10000, 99999)
    op_suffix = f"{_hex(rng, 8).lower()}-{_hex(rng, 2).lower()}"
    op_id = f"host-{rng.randrange(1, 99)}@{op_number}-{op_suffix}"
    if kind == "vmware_hostd":
        sub = rng.choice(
            ("Vimsvc.TaskManager", "Vimsvc.ha-eventmgr", "Hostsvc.VmkVprobSource")
        )
        params = [("sub", sub), ("opID", op_id)]
        if rng.random() < 0.5:
            params += [
                ("sid", _hex(rng, 8).lower()),
                ("user", "vpxuser:VSPHERE.LOCAL\\Administrator"),
            ]
        task = (
            "haTask-ha-host-vim.HostSystem.retrieveInternalCapability-"
            f"{rng.randrange(1, 999999)}"
        )
        client = f"10.{rng.randrange(1, 70)}.0.9"
        message = rng.choice(
            (
                f"Task Created : {task}",
                f"Task Completed : {task} Status success",
                f"Event {rng.randrange(1, 99999)} : User root@{client} logged in as "
                "VMware-client/6.5.0",
            )
        )
        record = format_record(
            esx,
            "Hostd",
            "-",
            format_extradata("Originator@6876", params),
            message,
            pid=str(rng.randrange(2000000, 2200000)),
        )
        tag = f"{prefix}.local4.info"
    elif kind == "vmware_vpxa":
        lro = rng.randrange(100000, 999999)
        params = [("sub", "vpxLro"), ("opID", op_id)]
        message = rng.choice(
            (
                f"[VpxLRO] -- BEGIN lro-{lro} -- vpxa -- "
                "vpxapi.VpxaService.retrieveChanges",
                f"[VpxLRO] -- FINISH lro-{lro}",
            )
        )
        record = format_record(
            esx,
            "Vpxa",
            "-",
            format_extradata("Originator@6876", params),
            message,
            pid=str(rng.randrange(2000000, 2200000)),
        )
        tag = f"{prefix}.local4.info"
    else:
        key = _hex(rng, 43)
        message = (
            "Accepted publickey for deploy from "
            f"10.{rng.randrange(1, 70)}.1.{rng.randrange(2, 254)} "
            f"port {rng.randrange(1024, 65535)} ssh2: ED25519 SHA256:{key}"
        )
        record = format_record(
            f"bastion{rng.randrange(1, 4)}",
            "sshd",
            "-",
            "-",
            message,
            pid=str(rng.randrange(1000, 60000)),
        )
        tag = f"{prefix}.auth.info"
    return f"{time_text}\t{tag}\t{record}\n".encode()


# Times, chunks and objects.


class Line(NamedTuple):
    """One output line with what it is: an event, a broken line or a foreign one."""

    epoch: int
    role: str  # "event", "broken" or "foreign"
    kind: str
    data: bytes


@dataclass(eq=False)
class Chunk:
    """A FluentD buffer chunk: the lines of one time slice flushed as one object."""

    source: Source
    time_slice: str
    folder: str
    lines: list[Line]
    compression: str
    copy_of: Chunk | None = None
    path: str = ""


# More events during working hours (UTC), as endpoint activity is.
_HOUR_WEIGHTS = tuple(
    int(weight)
    for weight in "1 1 1 1 1 2 4 7 9 10 10 9 8 9 10 10 9 7 5 4 3 2 2 1".split()
)
_HOUR_CUMULATIVE = tuple(sum(_HOUR_WEIGHTS[: i + 1]) for i in range(24))


def _random_epoch(rng: random.Random, start: int, days: int) -> int:
    day = rng.randrange(days)
    hour = rng.choices(range(24), cum_weights=_HOUR_CUMULATIVE)[0]
    return start + day * 86400 + hour * 3600 + rng.randrange(3600)


def _slice_of(source: Source, epoch: int) -> tuple[str, str]:
    local = time.gmtime(epoch + source.offset_minutes * 60)
    folder = time.strftime("kav/%Y/%m/%d", local)
    return folder, time.strftime("%Y%m%d%H" if source.hourly else "%Y%m%d", local)


def _event_counts(lines: Sequence[Line]) -> int:
    return sum(1 for line in lines if line.role == "event")


def _chunk_lines(
    lines: list[tuple[Source, Line]], lines_per_file: int
) -> dict[tuple[str, str], list[Chunk]]:
    by_slice: dict[tuple[str, str, str], list[Line]] = {}
    sources: dict[str, Source] = {}
    for source, line in lines:
        folder, time_slice = _slice_of(source, line.epoch)
        sources[source.name] = source
        by_slice.setdefault((source.name, folder, time_slice), []).append(line)
    chunks: dict[tuple[str, str], list[Chunk]] = {}
    for name, folder, time_slice in sorted(by_slice):
        slice_lines = sorted(
            by_slice[(name, folder, time_slice)], key=lambda line: line.epoch
        )
        source = sources[name]
        chunks[(name, time_slice)] = [
            Chunk(
                source,
                time_slice,
                folder,
                slice_lines[i : i + lines_per_file],
                source.compression,
            )
            for i in range(0, len(slice_lines), lines_per_file)
        ]
    return chunks


def _add_retries(
    rng: random.Random,
    chunks: dict[tuple[str, str], list[Chunk]],
    duplicate_target: int,
    compression: str,
) -> None:
    """Copy whole chunks to new objects until `duplicate_target` event lines repeat.

    A chunk with more event lines than still needed is first split in two, as
    a FluentD flush by interval leaves chunks smaller than the size limit.
    """
    candidates = [
        (key, chunk) for key, slice_chunks in chunks.items() for chunk in slice_chunks
    ]
    need = duplicate_target
    while need > 0 and candidates:
        key, chunk = candidates.pop(rng.randrange(len(candidates)))
        events = _event_counts(chunk.lines)
        if events == 0:
            continue
        slice_chunks = chunks[key]
        position = slice_chunks.index(chunk)
        if events > need:
            cut, seen = 0, 0
            while seen < need:
                seen += chunk.lines[cut].role == "event"
                cut += 1
            tail = Chunk(
                chunk.source,
                chunk.time_slice,
                chunk.folder,
                chunk.lines[cut:],
                chunk.compression,
            )
            chunk.lines = chunk.lines[:cut]
            slice_chunks.insert(position + 1, tail)
            events = need
        copy_compression = chunk.compression
        if (
            compression == "mixed"
            and chunk.compression == "none"
            and rng.random() < 0.5
        ):
            copy_compression = "gzip"
        copy = Chunk(
            chunk.source,
            chunk.time_slice,
            chunk.folder,
            chunk.lines,
            copy_compression,
            copy_of=chunk,
        )
        slice_chunks.insert(position + 1, copy)
        need -= events


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def _write_chunks(
    out_dir: str, chunks: dict[tuple[str, str], list[Chunk]]
) -> list[dict[str, Any]]:
    files = []
    for slice_chunks in chunks.values():
        for index, chunk in enumerate(slice_chunks):
            name = f"{chunk.source.name}_{chunk.time_slice}_{index}"
            chunk.path = f"{chunk.folder}/{name}{SUFFIXES[chunk.compression]}"
    for slice_chunks in chunks.values():
        for index, chunk in enumerate(slice_chunks):
            target = os.path.join(out_dir, *chunk.path.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(
                    _compress(
                        b"".join(line.data for line in chunk.lines), chunk.compression
                    )
                )
            files.append(_file_entry(chunk, index))
    files.sort(key=lambda entry: entry["path"])
    return files


def _file_entry(chunk: Chunk, index: int) -> dict[str, Any]:
    events = _event_counts(chunk.lines)
    roles = Counter(line.role for line in chunk.lines)
    return {
        "path": chunk.path,
        "source": chunk.source.name,
        "time_slice": chunk.time_slice,
        "index": index,
        "compression": chunk.compression,
        "lines": len(chunk.lines),
        "events": 0 if chunk.copy_of else events,
        "duplicate_lines": events if chunk.copy_of else 0,
        "broken_lines": roles["broken"],
        "foreign_lines": roles["foreign"],
        "copy_of": chunk.copy_of.path if chunk.copy_of else None,
        "broken": [
            {"line": number, "kind": line.kind}
            for number, line in enumerate(chunk.lines, start=1)
            if line.role == "broken"
        ],
        "foreign": [
            {"line": number, "kind": line.kind}
            for number, line in enumerate(chunk.lines, start=1)
            if line.role == "foreign"
        ],
    }


# The generator.


def _eligible(orgs: list[Org]) -> dict[str, tuple[list[Org], list[float]]]:
    def pool(selected: list[Org]) -> tuple[list[Org], list[float]]:
        return selected, [float(len(org.hosts)) for org in selected]

    english = [org for org in orgs if org.language == "en" and not org.sd_dropped]
    return {
        "en": pool(english),
        "wsee": pool(english),
        "ksc": pool(english),
        "relay": pool([org for org in orgs if org.sd_dropped]),
        "ru": pool([org for org in orgs if org.key == "ru"]),
        "es": pool([org for org in orgs if org.key == "es"]),
        "de": pool([org for org in orgs if org.key == "de"]),
    }


def _generate_events(
    rng: random.Random, orgs: list[Org], events: int, start: int, days: int
) -> tuple[list[tuple[Source, Line]], Counter, Counter, Counter, set[str]]:
    pools = _eligible(orgs)
    weights = [kind.weight for kind in KINDS]
    seen: set[bytes] = set()
    lines: list[tuple[Source, Line]] = []
    kinds: Counter = Counter()
    event_types: Counter = Counter()
    languages: Counter = Counter()
    hosts: set[str] = set()
    for _ in range(events):
        # A record that was already written is drawn again, first of the same
        # kind and then of another, so that every event is distinct.
        while True:
            kind = rng.choices(KINDS, weights)[0]
            candidates, org_weights = pools[kind.scope]
            built = None
            for _attempt in range(6):
                org = rng.choices(candidates, org_weights)[0]
                if kind.scope == "wsee":
                    host = rng.choice(org.servers)
                else:
                    host = rng.choice(org.hosts)
                epoch = _random_epoch(rng, start, days)
                event = kind.builder(rng, org, host, epoch)
                record = format_record(
                    event.host, event.ident, event.msgid, event.extradata, event.message
                )
                digest = hashlib.blake2b(record.encode(), digest_size=16).digest()
                if digest not in seen:
                    seen.add(digest)
                    built = (org, epoch, event, record)
                    break
            if built is not None:
                break
        org, epoch, event, record = built
        time_text = format_fluentd_time(epoch, org.source.offset_minutes)
        tag = f"{org.source.tag_prefix}.user.{event.severity}"
        data = f"{time_text}\t{tag}\t{record}\n".encode()
        lines.append((org.source, Line(epoch, "event", kind.name, data)))
        kinds[kind.name] += 1
        event_types[event.event_type or "-"] += 1
        languages[org.language] += 1
        hosts.add(event.host)
    return lines, kinds, event_types, languages, hosts


def generate(
    out_dir: str,
    events: int,
    seed: int = 1,
    duplicate_ratio: float = 0.01,
    broken_ratio: float = 0.005,
    foreign_ratio: float = 0.002,
    lines_per_file: int = 5000,
    compression: str = "mixed",
    start: str = "2024-03-11",
    days: int = 4,
) -> dict[str, Any]:
    """Write synthetic FluentD objects under `out_dir` and return their manifest.

    `events` distinct Kaspersky events are spread over `days` days from
    `start` (a UTC date). About `broken_ratio` and `foreign_ratio` of that
    number are added as broken lines and other products' lines, and whole
    chunks are re-uploaded until about `duplicate_ratio` of the lines are
    duplicates. `compression` is "mixed" (each FluentD host its own) or one of
    "gzip", "zstd", "none" for every object. Copies of broken and foreign
    lines inside a re-uploaded chunk count as broken and foreign lines, so
    `lines_total == distinct_events + duplicate_lines + broken_lines +
    foreign_lines`. Raises ValueError for invalid arguments or a non-empty
    `out_dir`.

    The manifest also counts `event_kinds`, `event_types`, `languages`,
    `broken_kinds`, `foreign_kinds`, `hosts` and `categories`, the class
    (`security` or `general`) each kind has in Kaspersky's event catalogue.
    Each entry of `files` gives that file's counts, the chunk it copies
    (`copy_of`) and the line numbers of its broken and foreign lines.
    """
    if events < 1:
        raise ValueError(f"events must be at least 1, got {events}")
    if lines_per_file < 1:
        raise ValueError(f"lines_per_file must be at least 1, got {lines_per_file}")
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"invalid compression {compression!r}; use one of {COMPRESSIONS}"
        )
    for name, ratio in (
        ("duplicate_ratio", duplicate_ratio),
        ("broken_ratio", broken_ratio),
        ("foreign_ratio", foreign_ratio),
    ):
        if not 0 <= ratio < 1:
            raise ValueError(f"{name} must be in [0, 1), got {ratio}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise ValueError(
            f"output folder {out_dir!r} is not empty; pass a new or empty folder"
        )
    start_epoch = calendar.timegm(time.strptime(start, "%Y-%m-%d"))

    rng = random.Random(seed)
    orgs = _build_orgs(rng, compression)
    lines, kinds, event_types, languages, hosts = _generate_events(
        rng, orgs, events, start_epoch, days
    )

    for kind in _spread_kinds(rng, BROKEN_KINDS, round(events * broken_ratio)):
        epoch = _random_epoch(rng, start_epoch, days)
        org, data = _broken_line(rng, kind, orgs, epoch)
        lines.append((org.source, Line(epoch, "broken", kind, data)))
    foreign_orgs = [orgs[0], orgs[0], orgs[1], orgs[4]]
    for kind in _spread_kinds(rng, FOREIGN_KINDS, round(events * foreign_ratio)):
        org = rng.choice(foreign_orgs)
        epoch = _random_epoch(rng, start_epoch, days)
        lines.append(
            (
                org.source,
                Line(epoch, "foreign", kind, _foreign_line(rng, kind, org, epoch)),
            )
        )

    chunks = _chunk_lines(lines, lines_per_file)
    duplicate_target = round(len(lines) * duplicate_ratio)
    _add_retries(rng, chunks, duplicate_target, compression)

    os.makedirs(out_dir, exist_ok=True)
    files = _write_chunks(out_dir, chunks)
    broken_kinds = Counter(item["kind"] for entry in files for item in entry["broken"])
    foreign_kinds = Counter(
        item["kind"] for entry in files for item in entry["foreign"]
    )
    categories: Counter = Counter()
    for kind in KINDS:
        categories[kind.category] += kinds[kind.name]
    epochs = [line.epoch for _, line in lines if line.role == "event"]

    manifest = {
        "generator": "benchmarks.synthetic",
        "parameters": {
            "events": events,
            "seed": seed,
            "duplicate_ratio": duplicate_ratio,
            "broken_ratio": broken_ratio,
            "foreign_ratio": foreign_ratio,
            "lines_per_file": lines_per_file,
            "compression": compression,
            "start": start,
            "days": days,
        },
        "files_written": len(files),
        "lines_total": sum(entry["lines"] for entry in files),
        "distinct_events": sum(entry["events"] for entry in files),
        "duplicate_lines": sum(entry["duplicate_lines"] for entry in files),
        "broken_lines": sum(entry["broken_lines"] for entry in files),
        "foreign_lines": sum(entry["foreign_lines"] for entry in files),
        "event_kinds": {kind.name: kinds[kind.name] for kind in KINDS},
        "categories": dict(sorted(categories.items())),
        "event_types": dict(sorted(event_types.items())),
        "languages": dict(sorted(languages.items())),
        "broken_kinds": {kind: broken_kinds[kind] for kind in BROKEN_KINDS},
        "foreign_kinds": {kind: foreign_kinds[kind] for kind in FOREIGN_KINDS},
        "hosts": len(hosts),
        "first_event_time": format_fluentd_time(min(epochs), 0),
        "last_event_time": format_fluentd_time(max(epochs), 0),
        "fluentd_offsets": sorted(
            {_offset_text(org.source.offset_minutes) for org in orgs}
        ),
        "files": files,
    }
    with open(os.path.join(out_dir, MANIFEST_NAME), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, ensure_ascii=False, indent=1)
        handle.write("\n")
    return manifest


def _spread_kinds(rng: random.Random, kinds: Sequence[str], count: int) -> list[str]:
    # Kinds in turn, then shuffled, so that even a small run has each kind.
    spread = [kinds[i % len(kinds)] for i in range(count)]
    rng.shuffle(spread)
    return spread


def _offset_text(offset_minutes: int) -> str:
    return format_fluentd_time(0, offset_minutes)[-6:]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator from the command line and print the manifest's totals."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.synthetic",
        description="Write synthetic FluentD files of Kaspersky Security Center "
        "exports.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="new or empty output folder")
    parser.add_argument(
        "--events", type=int, required=True, help="distinct events to write"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--duplicate-ratio",
        type=float,
        default=0.01,
        help="share of lines re-uploaded as chunk copies (default 0.01)",
    )
    parser.add_argument(
        "--broken-ratio",
        type=float,
        default=0.005,
        help="broken lines per event (default 0.005)",
    )
    parser.add_argument(
        "--foreign-ratio",
        type=float,
        default=0.002,
        help="other products' lines per event (default 0.002)",
    )
    parser.add_argument(
        "--lines-per-file",
        type=int,
        default=5000,
        help="maximum lines in one object (default 5000)",
    )
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default="mixed",
        help="object compression; mixed gives each FluentD host its own",
    )
    parser.add_argument(
        "--start", default="2024-03-11", help="first UTC day, YYYY-MM-DD"
    )
    parser.add_argument("--days", type=int, default=4, help="days the events span")
    args = parser.parse_args(argv)

    try:
        manifest = generate(
            args.out_dir,
            args.events,
            seed=args.seed,
            duplicate_ratio=args.duplicate_ratio,
            broken_ratio=args.broken_ratio,
            foreign_ratio=args.foreign_ratio,
            lines_per_file=args.lines_per_file,
            compression=args.compression,
            start=args.start,
            days=args.days,
        )
    except ValueError as error:
        parser.error(str(error))

    totals = {key: value for key, value in manifest.items() if key != "files"}
    print(json.dumps(totals, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
