"""Which systemic agents are anti-HER2, endocrine or chemotherapy: one list for every importer."""
from __future__ import annotations

ANTI_HER2 = ("trastuzumab", "pertuzumab", "t-dm1", "trastuzumab emtansine", "ado-trastuzumab emtansine",
             "t-dxd", "trastuzumab deruxtecan", "lapatinib", "tucatinib", "neratinib", "margetuximab",
             "zanidatamab", "pyrotinib")
ENDOCRINE = ("letrozole", "anastrozole", "exemestane", "tamoxifen", "fulvestrant", "elacestrant", "goserelin")
CHEMOTHERAPY = ("paclitaxel", "docetaxel", "nab-paclitaxel", "capecitabine", "vinorelbine", "eribulin",
                "carboplatin", "cisplatin", "gemcitabine", "doxorubicin", "cyclophosphamide", "epirubicin")
#: RxNorm ingredient codes we have checked; every other agent is recognised by its name (display or text).
ANTI_HER2_RXNORM = {"224905": "trastuzumab", "1298944": "pertuzumab"}


def agent_class(agent: str) -> str:
    name = str(agent).strip().lower()
    for names, cls in ((ANTI_HER2, "anti-HER2"), (ENDOCRINE, "endocrine"), (CHEMOTHERAPY, "chemotherapy")):
        if any(name == n or name.startswith(n + " ") or n in name for n in names):
            return cls
    return "other"
