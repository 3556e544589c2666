"""scikit-learn's own estimator checks on the three classifiers (tiny model).

``parametrize_with_checks`` runs every check scikit-learn runs on its own
estimators.  The checks feed numeric arrays; the classifiers read each row
as one text (several columns are joined with a space), so most checks run
as written.  The few that cannot pass are listed below with the reason,
and all of them come from what X is here (texts, not numeric features) or
from multi-label's output; the table is also in benchmarks/RESULTS.md.
"""

import tempfile

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from nbllm import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier
from tiny import save_tiny

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # The checks fit on integer labels and numeric X: nbllm warns about both.
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

# A long context: few-shot prompts of numeric rows are long.
FOLDER = save_tiny(tempfile.mkdtemp(prefix="nbllm-tiny-checks-"), max_positions=4096)
OPTIONS = dict(device="cpu", dtype="float32", progress=False)

NO_FEATURES = ("X holds texts, which have no number of features: n_features_in_ "
               "does not apply")
TEXT_ROWS = ("X holds texts: a row of several columns is one text (joined), so a "
             "different number of columns in predict is not an error")
ONE_D = "X holds texts: a 1-D X, one text per element, is the natural input"
INDICATOR = ("multi-label predict returns the indicator matrix, one column per "
             "class, also when y gave one label per sample")

EXPECTED_FAILURES = {
    "check_n_features_in": NO_FEATURES,
    "check_n_features_in_after_fitting": NO_FEATURES,
    "check_classifiers_train": TEXT_ROWS,
    "check_fit1d": ONE_D,
    "check_fit2d_predict1d": ONE_D,
}
MULTI_LABEL_FAILURES = {
    **EXPECTED_FAILURES,
    "check_classifiers_train": INDICATOR + "; and " + TEXT_ROWS,
    "check_classifiers_one_label": INDICATOR,
}


def expected_failed_checks(estimator):
    """What scikit-learn's ``expected_failed_checks`` asks: check -> reason."""
    if isinstance(estimator, MultiLabelZeroShotClassifier):
        return MULTI_LABEL_FAILURES
    return EXPECTED_FAILURES


ESTIMATORS = [
    ZeroShotClassifier(FOLDER, **OPTIONS),
    FewShotClassifier(FOLDER, **OPTIONS),
    MultiLabelZeroShotClassifier(FOLDER, **OPTIONS),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_scikit_learn_check(estimator, check):
    check(estimator)
