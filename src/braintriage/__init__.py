"""braintriage: flags brain MRI slices that show a tumor, for specialist review.

Decision support only, never a diagnosis.
"""

__version__ = "0.1.0"
