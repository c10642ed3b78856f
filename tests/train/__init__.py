"""Training tests. They train on the first KAGL file of ``../shared/data``, or on the bundled demo set
without it."""

from vestis.data import kagl_parquets

#: The validation share the training tests split their catalog by: the KAGL file's 20%, or, without the
#: shared data, 5% of the id hash, which splits the bundled demo set (its 300 products all lie below the
#: default 10%, being validation products) into 139 to train on and 161 to validate.
VAL_FRACTION = 0.2 if kagl_parquets() else 0.05
