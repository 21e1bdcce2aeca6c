"""The one error type for problems with a user's data (paths, layouts, label values)."""


class DataError(ValueError):
    """A dataset path, layout, file or label value is not what the loader expects.

    The message names the file or folder and says what is wrong; the command line prints it as
    one line without a traceback.
    """
