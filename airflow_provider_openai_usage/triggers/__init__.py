"""See the module inside; kept empty so importing the package stays cheap."""
