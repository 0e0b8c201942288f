"""Sphinx configuration: MyST markdown pages and the API reference generated from the package's docstrings.

autodoc imports the real package (aiida plugins import without a loaded profile), so no module is mocked.
"""

from __future__ import annotations

import aiida_polyhydride

project = 'aiida-polyhydride'
author = 'aiida-polyhydride developers'
copyright = '2026, aiida-polyhydride developers'
release = aiida_polyhydride.__version__
version = release

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}  # autosummary writes .rst stubs
exclude_patterns = ['_build', 'Thumbs.db', '.DS_Store']
myst_enable_extensions = ['colon_fence', 'deflist']
myst_heading_anchors = 3

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {'members': True, 'show-inheritance': True}
autodoc_typehints = 'description'
autodoc_member_order = 'bysource'

html_theme = 'furo'
html_title = f'aiida-polyhydride {release}'
