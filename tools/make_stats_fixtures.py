"""Writes tests/fixtures/stats.json: reference values for the statistics of `report` and
`regress`, computed with scipy and statsmodels:
- 95 % Wilson score intervals (scipy.stats.binomtest(...).proportion_ci(method="wilson"));
- exact McNemar p-values on (b, c) discordant counts (statsmodels' mcnemar(exact=True), which is
  the two-sided binomial test of min(b, c) in b + c at p = 1/2);
- pooled two-proportion z-test p-values (statsmodels' proportions_ztest);
- Holm-adjusted p-values (statsmodels' multipletests(method="holm")).

Run from the repository root:  python3 tools/make_stats_fixtures.py
(pip install scipy statsmodels)
"""
import json

import numpy as np
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

wilson = []
for k, n in [(0, 10), (10, 10), (1, 10), (762, 1000), (45, 200), (199, 200), (3, 7), (5000, 10000), (1, 1)]:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    wilson.append({"k": k, "n": n, "low": ci.low, "high": ci.high})

mcnemar_cases = []
for b, c in [(0, 0), (0, 1), (1, 0), (3, 3), (5, 0), (0, 12), (7, 19), (40, 62), (150, 100), (1, 30), (250, 320)]:
    table = [[100, b], [c, 100]]  # the concordant cells do not enter the exact test
    p = mcnemar(table, exact=True).pvalue
    mcnemar_cases.append({"b": b, "c": c, "p": float(p)})

two_proportion = []
for k1, n1, k2, n2 in [(762, 1000, 731, 1000), (45, 200, 60, 200), (90, 100, 91, 100), (500, 1000, 500, 1000), (10, 50, 30, 60)]:
    _, p = proportions_ztest([k1, k2], [n1, n2])
    two_proportion.append({"k1": k1, "n1": n1, "k2": k2, "n2": n2, "p": float(p)})

rng = np.random.default_rng(0)
holm = []
for pvalues in [[0.01, 0.04, 0.03, 0.005], list(rng.uniform(0, 0.2, 12)), [0.5, 0.5, 1.0], [1e-8, 0.2, 0.049, 0.0125]]:
    _, adjusted, _, _ = multipletests(pvalues, method="holm")
    holm.append({"p": [float(p) for p in pvalues], "adjusted": [float(p) for p in adjusted]})

with open("tests/fixtures/stats.json", "w") as f:
    json.dump({"wilson": wilson, "mcnemar": mcnemar_cases, "two_proportion": two_proportion, "holm": holm}, f, indent=1)
print("wrote tests/fixtures/stats.json")
