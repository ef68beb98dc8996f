"""Everything that draws in Streamlit: the pages, their session state, page-only frames and charts."""
